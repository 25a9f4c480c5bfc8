import Alert from "@mui/material/Alert";
import CircularProgress from "@mui/material/CircularProgress";
import Link from "@mui/material/Link";
import Paper from "@mui/material/Paper";
import Stack from "@mui/material/Stack";
import Typography from "@mui/material/Typography";
import { useEffect, useRef, useState } from "react";
import { Link as RouterLink } from "react-router-dom";

import { toProblem, type Problem } from "../api/errors";
import { useUserServiceVerifyEmailMutation } from "../api/generated";
import { useSession } from "../auth/useSession";
import { Page } from "../components/Page";
import { ProblemAlert } from "../components/ProblemAlert";
import { useLinkToken } from "./useLinkToken";

/** The page the verification mail links to (`${PUBLIC_BASE_URL}/verify-email?token=…`): it
 * confirms the address as soon as it opens (the token is single-use; opening the link is the
 * confirmation), signed in or not. */
export function VerifyEmailPage() {
  const token = useLinkToken();
  const { token: session } = useSession();
  const [verify] = useUserServiceVerifyEmailMutation();
  const [verified, setVerified] = useState<string | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const sent = useRef(false);

  useEffect(() => {
    if (!token || sent.current) return;
    sent.current = true; // once, even when React runs the effect twice
    void verify({ pinexaUsersV1VerifyEmailRequest: { token } }).then((result) => {
      if ("error" in result) setProblem(toProblem(result.error));
      else setVerified(result.data.email ?? "");
    });
  }, [token, verify]);

  const next = session ? (
    <Link component={RouterLink} to="/profile">Go to your profile</Link>
  ) : (
    <Link component={RouterLink} to="/signin">Sign in</Link>
  );
  return (
    <Page title="Confirm your e-mail address">
      <Paper sx={{ p: 3, maxWidth: 560 }}>
        <Stack spacing={2}>
          {!token && (
            <Alert severity="error" role="alert">
              This page needs the link from the mail we sent you. Open the link in that mail again.
            </Alert>
          )}
          {token && !verified && !problem && <CircularProgress aria-label="Confirming your address" />}
          {verified !== null && (
            <Alert severity="success" role="status">
              Your e-mail address {verified && <strong>{verified}</strong>} is confirmed.
            </Alert>
          )}
          <ProblemAlert problem={problem} />
          {problem && (
            <Typography>
              {session
                ? "You can ask for a new link from your profile."
                : "Sign in to ask for a new link from your profile."}
            </Typography>
          )}
          {(verified !== null || problem || !token) && <Typography>{next}</Typography>}
        </Stack>
      </Paper>
    </Page>
  );
}
