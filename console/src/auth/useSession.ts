import { useSyncExternalStore } from "react";

import { getAccessToken, isReady, subscribe } from "./session";

/** The access token (null when signed out) and whether the session is known yet. */
export function useSession(): { token: string | null; ready: boolean } {
  const token = useSyncExternalStore(subscribe, getAccessToken);
  const ready = useSyncExternalStore(subscribe, isReady);
  return { token, ready };
}
