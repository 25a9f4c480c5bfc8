import type { Problem } from "../api/errors";

/** A TextField's error state from a Problem's field violations: red, with the API's words as
 * its helper text (which Material UI ties to the input with aria-describedby). */
export function fieldError(problem: Problem | null, name: string, hint?: string) {
  const message = problem?.fields[name];
  return { error: Boolean(message), helperText: message ?? hint };
}
