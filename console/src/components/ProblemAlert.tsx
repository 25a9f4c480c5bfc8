import Alert from "@mui/material/Alert";
import type { ReactNode } from "react";

import type { Problem } from "../api/errors";

/** An API error, in words, announced to screen readers (role="alert"). */
export function ProblemAlert({ problem, action }: { problem: Problem | null; action?: ReactNode }) {
  if (!problem) return null;
  return (
    <Alert severity="error" role="alert" action={action} sx={{ my: 2 }} data-reason={problem.reason || undefined}>
      {problem.text}
    </Alert>
  );
}
