import Alert from "@mui/material/Alert";
import Button from "@mui/material/Button";
import Paper from "@mui/material/Paper";
import Stack from "@mui/material/Stack";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useState, type FormEvent } from "react";

import { toProblem, type Problem } from "../api/errors";
import { useUserServiceRequestPasswordResetMutation } from "../api/generated";
import { fieldError } from "../components/fieldError";
import { ProblemAlert } from "../components/ProblemAlert";

/** "Forgot your password?" on the sign-in page: asks auth to mail a reset link. The answer is the
 * same whether or not an account has the address (auth's rule), and so is what this says. */
export function ForgotPassword({ initialEmail = "" }: { initialEmail?: string }) {
  const [request, { isLoading }] = useUserServiceRequestPasswordResetMutation();
  const [email, setEmail] = useState(initialEmail.includes("@") ? initialEmail : "");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [sentTo, setSentTo] = useState<string | null>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    setSentTo(null);
    const result = await request({ pinexaUsersV1RequestPasswordResetRequest: { email } });
    if ("error" in result) setProblem(toProblem(result.error));
    else setSentTo(email);
  }

  return (
    <Paper component="form" onSubmit={submit} noValidate sx={{ p: 3, maxWidth: 420, mt: 3 }} aria-labelledby="forgot-title">
      <Stack spacing={2}>
        <Typography variant="h5" component="h2" id="forgot-title">
          Reset your password
        </Typography>
        <Typography variant="body2">
          We mail a link to choose a new password. It works once, and only for a short while.
        </Typography>
        <ProblemAlert problem={problem} />
        {sentTo !== null && (
          <Alert severity="success" role="status">
            If an account has the address {sentTo}, a link to reset its password is on its way. Check your mail.
          </Alert>
        )}
        <TextField
          label="Your e-mail address"
          name="email"
          type="email"
          autoComplete="email"
          value={email}
          onChange={(e) => setEmail(e.target.value)}
          required
          autoFocus
          {...fieldError(problem, "email")}
        />
        <Button type="submit" variant="outlined" disabled={isLoading} sx={{ alignSelf: "flex-start" }}>
          Send the reset link
        </Button>
      </Stack>
    </Paper>
  );
}
