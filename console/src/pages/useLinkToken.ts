import { useState } from "react";
import { useLocation } from "react-router-dom";

/** The `token` of a link from a mail (`?token=…`), read once; the address bar then drops it, so
 * it stays out of the history and of anything that reads the URL later. */
export function useLinkToken(): string {
  const location = useLocation();
  const [token] = useState(() => {
    const value = new URLSearchParams(location.search).get("token") ?? "";
    if (value && typeof window !== "undefined") window.history.replaceState(window.history.state, "", location.pathname);
    return value;
  });
  return token;
}
