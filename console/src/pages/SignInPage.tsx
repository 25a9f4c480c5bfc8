import Button from "@mui/material/Button";
import Link from "@mui/material/Link";
import Paper from "@mui/material/Paper";
import Stack from "@mui/material/Stack";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useState, type FormEvent } from "react";
import { Link as RouterLink, useLocation, useNavigate } from "react-router-dom";

import type { Problem } from "../api/errors";
import { SessionError, signIn, signInWithSecondFactor } from "../auth/session";
import { Page } from "../components/Page";
import { ProblemAlert } from "../components/ProblemAlert";
import { SecondFactorForm } from "../components/SecondFactorForm";
import { ForgotPassword } from "./ForgotPassword";

export function SignInPage() {
  const navigate = useNavigate();
  const location = useLocation();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const [forgot, setForgot] = useState(false);
  const [mfaToken, setMfaToken] = useState<string | null>(null);
  const next = (location.state as { from?: string } | null)?.from ?? "/items";

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setProblem(null);
    try {
      const result = await signIn({ username, password });
      if (result.signedIn) navigate(next, { replace: true });
      else setMfaToken(result.mfaToken); // the account has a second factor: ask for the code
    } catch (error) {
      setProblem(error instanceof SessionError ? error.problem : null);
    } finally {
      setBusy(false);
    }
  }

  if (mfaToken) {
    return (
      <Page title="Sign in">
        <Paper sx={{ p: 3, maxWidth: 420 }}>
          <SecondFactorForm
            send={(factor) => signInWithSecondFactor(mfaToken, factor)}
            onDone={() => navigate(next, { replace: true })}
            cancel="Start again"
            giveUpOn={["MFA_TOKEN_INVALID"]}
            onCancel={(why) => {
              setMfaToken(null);
              setPassword("");
              setProblem(why);
            }}
          />
        </Paper>
      </Page>
    );
  }

  return (
    <Page title="Sign in">
      <Paper component="form" onSubmit={submit} noValidate sx={{ p: 3, maxWidth: 420 }} aria-label="Sign in">
        <Stack spacing={2}>
          <ProblemAlert problem={problem} />
          <TextField
            label="Username or e-mail"
            name="username"
            autoComplete="username"
            value={username}
            onChange={(e) => setUsername(e.target.value)}
            error={Boolean(problem?.fields.username)}
            helperText={problem?.fields.username}
            required
            autoFocus
          />
          <TextField
            label="Password"
            name="password"
            type="password"
            autoComplete="current-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            error={Boolean(problem?.fields.password)}
            helperText={problem?.fields.password}
            required
          />
          <Button type="submit" variant="contained" disabled={busy}>
            Sign in
          </Button>
          <Button
            variant="text"
            onClick={() => setForgot(true)}
            aria-expanded={forgot}
            aria-controls="forgot-password"
            sx={{ alignSelf: "flex-start" }}
          >
            Forgot your password?
          </Button>
          <Typography>
            New here?{" "}
            <Link component={RouterLink} to="/signup">
              Create an account
            </Link>
          </Typography>
        </Stack>
      </Paper>
      <div id="forgot-password">{forgot && <ForgotPassword initialEmail={username} />}</div>
    </Page>
  );
}
