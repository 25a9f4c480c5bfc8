import Alert from "@mui/material/Alert";
import Button from "@mui/material/Button";
import Paper from "@mui/material/Paper";
import Stack from "@mui/material/Stack";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useState, type FormEvent } from "react";

import { toProblem, type Problem } from "../api/errors";
import { useAuthServiceChangePasswordMutation } from "../api/generated";
import { fieldError } from "../components/fieldError";
import { ProblemAlert } from "../components/ProblemAlert";

// Here a wrong password is the current one, not a sign-in's.
const WORDING = { INVALID_CREDENTIALS: "Your current password is not right." };

/** The account's own password change: the current password and a new one. Auth signs out every
 * other session of the account and keeps this one. */
export function ChangePasswordForm({ userId }: { userId: string }) {
  const [change, { isLoading }] = useAuthServiceChangePasswordMutation();
  const [form, setForm] = useState({ current_password: "", new_password: "" });
  const [problem, setProblem] = useState<Problem | null>(null);
  const [ended, setEnded] = useState<number | null>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    setEnded(null);
    const result = await change({ id: userId, body: form });
    if ("error" in result) {
      setProblem(toProblem(result.error, WORDING));
      return;
    }
    setForm({ current_password: "", new_password: "" });
    setEnded(result.data.revoked_sessions ?? 0);
  }

  const field = (name: keyof typeof form) => ({
    name,
    type: "password",
    value: form[name],
    onChange: (e: { target: { value: string } }) => setForm({ ...form, [name]: e.target.value }),
    required: true,
  });
  return (
    <Paper component="form" onSubmit={submit} noValidate sx={{ p: 3, maxWidth: 520 }} aria-labelledby="password-title">
      <Stack spacing={2}>
        <Typography variant="h5" component="h2" id="password-title">
          Password
        </Typography>
        <ProblemAlert problem={problem} />
        {ended !== null && (
          <Alert severity="success" role="status">
            Your password is changed.{" "}
            {ended === 0 ? "No other session was signed in." : `${ended} other session${ended === 1 ? " was" : "s were"} signed out.`}
          </Alert>
        )}
        <TextField label="Current password" autoComplete="current-password" {...field("current_password")} {...fieldError(problem, "current_password")} />
        <TextField
          label="New password"
          autoComplete="new-password"
          {...field("new_password")}
          {...fieldError(problem, "new_password", "At least 10 characters. Your other sessions will be signed out.")}
        />
        <Button type="submit" variant="contained" disabled={isLoading} sx={{ alignSelf: "flex-start" }}>
          Change password
        </Button>
      </Stack>
    </Paper>
  );
}
