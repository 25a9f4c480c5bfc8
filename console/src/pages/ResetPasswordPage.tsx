import Alert from "@mui/material/Alert";
import Button from "@mui/material/Button";
import Link from "@mui/material/Link";
import Paper from "@mui/material/Paper";
import Stack from "@mui/material/Stack";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useState, type FormEvent } from "react";
import { Link as RouterLink } from "react-router-dom";

import { toProblem, type Problem } from "../api/errors";
import { useAuthServiceConfirmPasswordResetMutation } from "../api/generated";
import { endLocalSession } from "../auth/session";
import { useSession } from "../auth/useSession";
import { fieldError } from "../components/fieldError";
import { Page } from "../components/Page";
import { ProblemAlert } from "../components/ProblemAlert";
import { useLinkToken } from "./useLinkToken";

/** The page the reset mail links to (`${PUBLIC_BASE_URL}/reset-password?token=…`): a new
 * password. Success ends every session of the account, this tab's too, so it signs in again. */
export function ResetPasswordPage() {
  const token = useLinkToken();
  const { token: session } = useSession();
  const [confirm, { isLoading }] = useAuthServiceConfirmPasswordResetMutation();
  const [password, setPassword] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [done, setDone] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    const result = await confirm({ pinexaAuthV1ConfirmPasswordResetRequest: { token, new_password: password } });
    if ("error" in result) {
      setProblem(toProblem(result.error));
      return;
    }
    setDone(true);
    setPassword("");
    if (session) endLocalSession(); // auth ended it already
  }

  if (!token) {
    return (
      <Page title="Choose a new password">
        <Alert severity="error" role="alert" sx={{ maxWidth: 560 }}>
          This page needs the link from the password-reset mail. Open the link in that mail again, or{" "}
          <Link component={RouterLink} to="/signin">ask for a new one</Link> on the sign-in page.
        </Alert>
      </Page>
    );
  }
  return (
    <Page title="Choose a new password">
      <Paper component="form" onSubmit={submit} noValidate sx={{ p: 3, maxWidth: 480 }} aria-label="Reset password">
        <Stack spacing={2}>
          <ProblemAlert problem={problem} />
          {problem?.reason.startsWith("MAIL_TOKEN_") && (
            <Typography>
              <Link component={RouterLink} to="/signin">Ask for a new link</Link> on the sign-in page.
            </Typography>
          )}
          {done ? (
            <>
              <Alert severity="success" role="status">
                Your password is changed, and every session of your account was signed out.
              </Alert>
              <Typography>
                <Link component={RouterLink} to="/signin">Sign in with the new password</Link>
              </Typography>
            </>
          ) : (
            <>
              <TextField
                label="New password"
                name="new_password"
                type="password"
                autoComplete="new-password"
                value={password}
                onChange={(e) => setPassword(e.target.value)}
                required
                autoFocus
                {...fieldError(problem, "new_password", "At least 10 characters")}
              />
              <Button type="submit" variant="contained" disabled={isLoading} sx={{ alignSelf: "flex-start" }}>
                Set the new password
              </Button>
            </>
          )}
        </Stack>
      </Paper>
    </Page>
  );
}
