// The one RTK Query API. Its endpoints are generated (src/api/generated.ts, `make generate`);
// this file adds what every call needs: the in-memory access token, one refresh-and-retry on an
// expired token, and the Retry-After header kept with an error for the throttling message.
import {
  createApi,
  fetchBaseQuery,
  type BaseQueryFn,
  type FetchArgs,
  type FetchBaseQueryError,
} from "@reduxjs/toolkit/query/react";

import { getAccessToken, refresh } from "../auth/session";

const raw = fetchBaseQuery({
  baseUrl: "/",
  credentials: "same-origin",
  prepareHeaders: (headers) => {
    const token = getAccessToken();
    if (token) headers.set("authorization", `Bearer ${token}`);
    return headers;
  },
});

const RETRY_AFTER_REFRESH = new Set(["TOKEN_EXPIRED", "TOKEN_INVALID", "TOKEN_MISSING"]);

function reasonOf(error: FetchBaseQueryError): string {
  const details = (error.data as { details?: Array<{ reason?: string }> } | undefined)?.details;
  return details?.find((d) => typeof d.reason === "string")?.reason ?? "";
}

export const baseQuery: BaseQueryFn<string | FetchArgs, unknown, FetchBaseQueryError> = async (args, api, extra) => {
  let result = await raw(args, api, extra);
  if (result.error?.status === 401 && RETRY_AFTER_REFRESH.has(reasonOf(result.error))) {
    const token = await refresh().catch(() => null);
    if (token) result = await raw(args, api, extra);
  }
  if (result.error && result.meta?.response) {
    const retryAfter = result.meta.response.headers.get("retry-after");
    if (retryAfter && result.error.data && typeof result.error.data === "object") {
      result.error = { ...result.error, data: { ...(result.error.data as object), retryAfter } } as FetchBaseQueryError;
    }
  }
  return result;
};

export const baseApi = createApi({
  reducerPath: "api",
  baseQuery,
  endpoints: () => ({}),
});
