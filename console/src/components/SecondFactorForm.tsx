import Button from "@mui/material/Button";
import Stack from "@mui/material/Stack";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useState, type FormEvent } from "react";

import type { Problem } from "../api/errors";
import { SessionError, type SecondFactor } from "../auth/session";
import { ProblemAlert } from "./ProblemAlert";

/** A second factor asked for: the code the authenticator app shows, or a recovery code. Used by
 * the sign-in's second step and by step-up. `send` throws a SessionError; a reason in `giveUpOn`
 * ends the form (an expired sign-in goes back to the password). */
export function SecondFactorForm({
  send,
  onDone,
  onCancel,
  cancel,
  giveUpOn = [],
  label = "Second factor",
}: {
  send: (factor: SecondFactor) => Promise<void>;
  onDone: () => void;
  onCancel: (problem: Problem | null) => void;
  /** The cancelling button's words. */
  cancel: string;
  giveUpOn?: string[];
  label?: string;
}) {
  const [recovery, setRecovery] = useState(false);
  const [value, setValue] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const field = recovery ? "recovery_code" : "code";

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setProblem(null);
    const entered = value.replace(/\s+/g, "");
    const factor: SecondFactor = recovery ? { recovery_code: entered } : { code: entered };
    try {
      await send(factor);
      onDone();
    } catch (error) {
      const found = error instanceof SessionError ? error.problem : null;
      if (found && giveUpOn.includes(found.reason)) onCancel(found);
      else setProblem(found);
    } finally {
      setBusy(false);
    }
  }

  return (
    <Stack component="form" spacing={2} onSubmit={submit} noValidate aria-label={label}>
      <Typography>
        {recovery
          ? "Enter one of the recovery codes you saved when you set up the second factor. Each works once."
          : "Enter the 6-digit code your authenticator app shows for Pinexa."}
      </Typography>
      <ProblemAlert problem={problem} />
      <TextField
        key={field}
        label={recovery ? "Recovery code" : "Authenticator code"}
        name={field}
        autoComplete="one-time-code"
        inputProps={recovery ? { spellCheck: false } : { inputMode: "numeric", pattern: "[0-9]*", maxLength: 6 }}
        value={value}
        onChange={(e) => setValue(e.target.value)}
        error={Boolean(problem?.fields[field])}
        helperText={problem?.fields[field]}
        required
        autoFocus
      />
      <Button type="submit" variant="contained" disabled={busy || !value.trim()}>
        Verify
      </Button>
      <Button
        variant="text"
        sx={{ alignSelf: "flex-start" }}
        onClick={() => {
          setRecovery(!recovery);
          setValue("");
          setProblem(null);
        }}
      >
        {recovery ? "Use the authenticator code instead" : "Use a recovery code instead"}
      </Button>
      <Button variant="text" sx={{ alignSelf: "flex-start" }} onClick={() => onCancel(null)}>
        {cancel}
      </Button>
    </Stack>
  );
}
