import Alert from "@mui/material/Alert";
import Button from "@mui/material/Button";
import CircularProgress from "@mui/material/CircularProgress";
import Paper from "@mui/material/Paper";
import Stack from "@mui/material/Stack";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useEffect, useState, type FormEvent } from "react";

import { toProblem, type Problem } from "../api/errors";
import {
  useUserServiceGetMeQuery,
  useUserServiceSendVerificationEmailMutation,
  useUserServiceUpdateUser1Mutation,
  type PinexaUsersV1UserRead,
} from "../api/generated";
import { Page } from "../components/Page";
import { ProblemAlert } from "../components/ProblemAlert";
import { ChangePasswordForm } from "./ChangePasswordForm";
import { SecondFactorPanel } from "./SecondFactorPanel";
import { SessionsPanel } from "./SessionsPanel";

/** Mail the verification link again (to the pending address when there is one). Throttled per
 * address and per client: a 429 says when to try again. */
function ResendVerification({ user }: { user: PinexaUsersV1UserRead }) {
  const [send, { isLoading }] = useUserServiceSendVerificationEmailMutation();
  const [problem, setProblem] = useState<Problem | null>(null);
  const [sentTo, setSentTo] = useState("");

  async function resend() {
    setProblem(null);
    setSentTo("");
    const result = await send({ id: user.id, body: {} });
    if ("error" in result) setProblem(toProblem(result.error));
    else setSentTo(result.data.email ?? "");
  }
  return (
    <Stack spacing={1} sx={{ alignItems: "flex-start" }}>
      <Button variant="outlined" size="small" onClick={resend} disabled={isLoading}>
        Send the link again
      </Button>
      {sentTo && <Alert severity="success" role="status">A new link is on its way to {sentTo}.</Alert>}
      <ProblemAlert problem={problem} />
    </Stack>
  );
}

/** Display name and e-mail, the password, and the sessions. A new e-mail address is pending
 * until it is confirmed from the link mailed to it (UpdateUser keeps `email` until then and
 * reports `pending_email`). */
export function ProfilePage() {
  const me = useUserServiceGetMeQuery();
  const [update, { isLoading }] = useUserServiceUpdateUser1Mutation();
  const [form, setForm] = useState({ display_name: "", email: "" });
  const [problem, setProblem] = useState<Problem | null>(null);
  const [saved, setSaved] = useState(false);

  useEffect(() => {
    if (me.data) setForm({ display_name: me.data.display_name ?? "", email: me.data.email ?? "" });
  }, [me.data]);

  if (me.isLoading) return <CircularProgress aria-label="Loading your profile" />;
  if (me.error || !me.data) return <ProblemAlert problem={toProblem(me.error)} />;
  const user = me.data;

  async function submit(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    setSaved(false);
    const changed = (["display_name", "email"] as const).filter((name) => form[name] !== (user[name] ?? ""));
    if (changed.length === 0) {
      setSaved(true);
      return;
    }
    const result = await update({
      id: user.id,
      updateMask: changed.join(","),
      pinexaUsersV1User: { ...form, etag: user.etag },
    });
    if ("error" in result) setProblem(toProblem(result.error));
    else setSaved(true);
  }

  const field = (name: "display_name" | "email") => ({
    name,
    value: form[name],
    onChange: (e: { target: { value: string } }) => setForm({ ...form, [name]: e.target.value }),
    error: Boolean(problem?.fields[name]),
    helperText: problem?.fields[name],
  });

  return (
    <Page title="Your profile">
      <Paper component="form" onSubmit={submit} noValidate sx={{ p: 3, maxWidth: 520 }} aria-label="Your profile">
        <Stack spacing={2}>
          <Typography>
            Signed in as <strong>{user.username}</strong> ({user.role === "ADMIN" ? "administrator" : "user"})
          </Typography>
          <ProblemAlert
            problem={problem}
            action={
              problem?.reason === "ETAG_MISMATCH" ? (
                <Button color="inherit" onClick={() => { setProblem(null); me.refetch(); }}>
                  Reload
                </Button>
              ) : undefined
            }
          />
          {saved && <Alert severity="success" role="status">Saved.</Alert>}
          {user.pending_email ? (
            <Alert severity="info" aria-label="E-mail change">
              Waiting for you to confirm <strong>{user.pending_email}</strong>: open the link we mailed
              there. Until then your address stays {user.email}.
            </Alert>
          ) : (
            <Typography variant="body2" color="text.secondary" aria-label="E-mail status">
              {user.email_verified ? "Your e-mail address is confirmed." : "Your e-mail address is not confirmed yet."}
            </Typography>
          )}
          {(user.pending_email || !user.email_verified) && <ResendVerification user={user} />}
          <TextField label="Display name" autoComplete="name" {...field("display_name")} />
          <TextField label="E-mail" type="email" autoComplete="email" {...field("email")} />
          <Button type="submit" variant="contained" disabled={isLoading} sx={{ alignSelf: "flex-start" }}>
            Save
          </Button>
        </Stack>
      </Paper>
      <Stack spacing={3} sx={{ mt: 3 }}>
        <ChangePasswordForm userId={user.id} />
        <SecondFactorPanel userId={user.id} />
        <SessionsPanel />
      </Stack>
    </Page>
  );
}
