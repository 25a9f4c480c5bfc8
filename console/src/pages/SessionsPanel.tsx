import Alert from "@mui/material/Alert";
import Button from "@mui/material/Button";
import Chip from "@mui/material/Chip";
import LinearProgress from "@mui/material/LinearProgress";
import Paper from "@mui/material/Paper";
import Stack from "@mui/material/Stack";
import Table from "@mui/material/Table";
import TableBody from "@mui/material/TableBody";
import TableCell from "@mui/material/TableCell";
import TableHead from "@mui/material/TableHead";
import TableRow from "@mui/material/TableRow";
import Typography from "@mui/material/Typography";
import { useState } from "react";

import { toProblem, type Problem } from "../api/errors";
import {
  useAuthServiceDeleteSessionMutation,
  useAuthServiceListSessionsQuery,
  useAuthServiceLogoutMutation,
  type PinexaAuthV1Session,
} from "../api/generated";
import { ProblemAlert } from "../components/ProblemAlert";

function when(value?: string): string {
  return value ? new Date(value).toLocaleString() : "";
}

/** A user agent in a few words: "Chrome on Linux", else the agent itself (trimmed). */
export function describeAgent(agent?: string): string {
  if (!agent) return "Unknown device";
  const browser = /Edg\//.test(agent)
    ? "Edge"
    : /Firefox\//.test(agent)
      ? "Firefox"
      : /(Chrome|Chromium)\//.test(agent)
        ? "Chrome"
        : /Safari\//.test(agent)
          ? "Safari"
          : "";
  const os = /Android/.test(agent)
    ? "Android"
    : /iPhone|iPad/.test(agent)
      ? "iOS"
      : /Windows/.test(agent)
        ? "Windows"
        : /Mac OS X/.test(agent)
          ? "macOS"
          : /Linux/.test(agent)
            ? "Linux"
            : "";
  if (browser && os) return `${browser} on ${os}`;
  return agent.length > 60 ? `${agent.slice(0, 57)}…` : agent;
}

/** The caller's sessions (auth's ListSessions, newest first), this one marked; end any other
 * one, or every other one at once. Their access tokens are refused at once (auth streams the
 * ended ids to every service). */
export function SessionsPanel() {
  const list = useAuthServiceListSessionsQuery();
  const [end, ending] = useAuthServiceDeleteSessionMutation();
  const [logout, loggingOut] = useAuthServiceLogoutMutation();
  const [problem, setProblem] = useState<Problem | null>(null);
  const [notice, setNotice] = useState("");
  const sessions = list.data?.sessions ?? [];
  const others = sessions.filter((s) => !s.current).length;

  async function endOne(session: PinexaAuthV1Session) {
    setProblem(null);
    setNotice("");
    const result = await end({ id: session.id });
    if ("error" in result) setProblem(toProblem(result.error));
    else setNotice(`Signed out ${describeAgent(session.user_agent)}.`);
  }

  async function endOthers() {
    setProblem(null);
    setNotice("");
    // Native mode (no cookie header): this tab's cookie and session stay as they are.
    const result = await logout({ pinexaAuthV1LogoutRequest: { refresh_token: "", other_sessions: true } });
    if ("error" in result) setProblem(toProblem(result.error));
    else {
      const n = result.data.revoked_sessions ?? 0;
      setNotice(`${n} other session${n === 1 ? " was" : "s were"} signed out.`);
    }
  }

  return (
    <Paper sx={{ p: 3 }} component="section" aria-labelledby="sessions-title">
      <Stack spacing={2}>
        <Typography variant="h5" component="h2" id="sessions-title">
          Sessions
        </Typography>
        <Typography variant="body2">Where your account is signed in. Sign out any you do not recognise.</Typography>
        <ProblemAlert problem={problem ?? toProblem(list.error)} />
        {notice && <Alert severity="success" role="status">{notice}</Alert>}
        {list.isFetching && <LinearProgress aria-label="Loading sessions" />}
        <Table aria-label="Sessions" size="small">
          <TableHead>
            <TableRow>
              <TableCell component="th" scope="col">Device</TableCell>
              <TableCell component="th" scope="col">Address</TableCell>
              <TableCell component="th" scope="col">Signed in</TableCell>
              <TableCell component="th" scope="col">Last active</TableCell>
              <TableCell component="th" scope="col"><span className="visually-hidden">Actions</span></TableCell>
            </TableRow>
          </TableHead>
          <TableBody>
            {sessions.map((session) => (
              <TableRow key={session.id} selected={session.current}>
                <TableCell component="th" scope="row" title={session.user_agent}>
                  {describeAgent(session.user_agent)}
                </TableCell>
                <TableCell>{session.client_address}</TableCell>
                <TableCell>{when(session.created_at)}</TableCell>
                <TableCell>{when(session.last_used_at)}</TableCell>
                <TableCell>
                  {session.current ? (
                    <Chip label="This session" color="primary" size="small" />
                  ) : (
                    <Button
                      size="small"
                      color="error"
                      onClick={() => endOne(session)}
                      disabled={ending.isLoading}
                      aria-label={`End the session of ${describeAgent(session.user_agent)}, signed in ${when(session.created_at)}`}
                    >
                      End
                    </Button>
                  )}
                </TableCell>
              </TableRow>
            ))}
          </TableBody>
        </Table>
        <Button
          variant="outlined"
          color="error"
          onClick={endOthers}
          disabled={others === 0 || loggingOut.isLoading}
          sx={{ alignSelf: "flex-start" }}
        >
          Sign out other sessions
        </Button>
      </Stack>
    </Paper>
  );
}
