import Alert from "@mui/material/Alert";
import Button from "@mui/material/Button";
import Chip from "@mui/material/Chip";
import LinearProgress from "@mui/material/LinearProgress";
import MenuItem from "@mui/material/MenuItem";
import Paper from "@mui/material/Paper";
import Stack from "@mui/material/Stack";
import Table from "@mui/material/Table";
import TableBody from "@mui/material/TableBody";
import TableCell from "@mui/material/TableCell";
import TableContainer from "@mui/material/TableContainer";
import TableHead from "@mui/material/TableHead";
import TableRow from "@mui/material/TableRow";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useState } from "react";

import { toProblem, type Problem } from "../api/errors";
import {
  useAuthServiceDisableUserMutation,
  useAuthServiceEnableUserMutation,
  useAuthServiceSignOutUserMutation,
  useUserServiceGetMeQuery,
  useUserServiceListUsersQuery,
  useUserServiceUpdateUser1Mutation,
  type PinexaUsersV1UserRead,
  type PinexaUsersV1UserRole,
} from "../api/generated";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { Page } from "../components/Page";
import { ProblemAlert } from "../components/ProblemAlert";

const PAGE_SIZE = 20;

type Action = "signOut" | "disable" | "enable";

const ACTIONS: Record<Action, { title: (name: string) => string; text: string; confirm: string }> = {
  signOut: {
    title: (name) => `Sign ${name} out everywhere?`,
    text: "Every session of this account ends at once; they can sign in again.",
    confirm: "Sign out",
  },
  disable: {
    title: (name) => `Disable ${name}?`,
    text: "Every session of this account ends at once, and it cannot sign in until it is enabled again.",
    confirm: "Disable",
  },
  enable: {
    title: (name) => `Enable ${name}?`,
    text: "The account can sign in again.",
    confirm: "Enable",
  },
};

/** Admins: every account, oldest first, with its role; sign an account out everywhere, disable
 * it or enable it again (each after confirming). */
export function AdminUsersPage() {
  const [tokens, setTokens] = useState<string[]>([""]);
  const list = useUserServiceListUsersQuery({ pageSize: PAGE_SIZE, pageToken: tokens[tokens.length - 1] || undefined });
  const [update] = useUserServiceUpdateUser1Mutation();
  const [problem, setProblem] = useState<Problem | null>(null);
  const me = useUserServiceGetMeQuery();
  const [signOut, signingOut] = useAuthServiceSignOutUserMutation();
  const [disable, disabling] = useAuthServiceDisableUserMutation();
  const [enable, enabling] = useAuthServiceEnableUserMutation();
  const [pending, setPending] = useState<{ user: PinexaUsersV1UserRead; action: Action } | null>(null);
  // What the dialog shows: the last action asked for, kept while it fades out after closing.
  const [shown, setShown] = useState<{ user: PinexaUsersV1UserRead; action: Action } | null>(null);
  const ask = (user: PinexaUsersV1UserRead, action: Action) => {
    setPending({ user, action });
    setShown({ user, action });
  };
  const [actionProblem, setActionProblem] = useState<Problem | null>(null);
  const [notice, setNotice] = useState("");
  const users = list.data?.users ?? [];
  const next = list.data?.next_page_token ?? "";

  async function setRole(user: PinexaUsersV1UserRead, role: PinexaUsersV1UserRole) {
    setProblem(null);
    const result = await update({ id: user.id, updateMask: "role", pinexaUsersV1User: { role, etag: user.etag } });
    if ("error" in result) setProblem(toProblem(result.error));
  }

  async function confirmAction() {
    if (!pending) return;
    const { user, action } = pending;
    setActionProblem(null);
    const call = { signOut, disable, enable }[action];
    const result = await call({ id: user.id, body: {} });
    if ("error" in result) {
      setActionProblem(toProblem(result.error));
      return;
    }
    const revoked = (result.data as { revoked_sessions?: number }).revoked_sessions ?? 0;
    setNotice(
      action === "enable"
        ? `${user.username} can sign in again.`
        : `${user.username} is ${action === "disable" ? "disabled" : "signed out"}; ${revoked} session${revoked === 1 ? "" : "s"} ended.`,
    );
    setPending(null);
    if (action !== "signOut") list.refetch();
  }

  if (list.error) {
    return (
      <Page title="Users">
        <ProblemAlert problem={toProblem(list.error)} />
      </Page>
    );
  }
  return (
    <Page title="Users">
      <ProblemAlert problem={problem} />
      {notice && <Alert severity="success" role="status" sx={{ mb: 2 }}>{notice}</Alert>}
      {list.isFetching && <LinearProgress aria-label="Loading accounts" />}
      <TableContainer component={Paper}>
        <Table aria-label="Users">
          <TableHead>
            <TableRow>
              <TableCell component="th" scope="col">Username</TableCell>
              <TableCell component="th" scope="col">E-mail</TableCell>
              <TableCell component="th" scope="col">Created</TableCell>
              <TableCell component="th" scope="col">Role</TableCell>
              <TableCell component="th" scope="col">Status</TableCell>
              <TableCell component="th" scope="col">Actions</TableCell>
            </TableRow>
          </TableHead>
          <TableBody>
            {users.map((user) => (
              <TableRow key={user.id}>
                <TableCell component="th" scope="row">
                  {user.username}
                  {user.display_name && (
                    <Typography variant="body2" color="text.secondary">{user.display_name}</Typography>
                  )}
                </TableCell>
                <TableCell>
                  {user.email}
                  {!user.email_verified && (
                    <Typography variant="body2" color="text.secondary">not confirmed</Typography>
                  )}
                </TableCell>
                <TableCell>{user.created_at ? new Date(user.created_at).toLocaleDateString() : ""}</TableCell>
                <TableCell>
                  <TextField
                    select
                    size="small"
                    label={`Role of ${user.username}`}
                    value={user.role ?? "USER"}
                    onChange={(e) => setRole(user, e.target.value as PinexaUsersV1UserRole)}
                  >
                    <MenuItem value="USER">User</MenuItem>
                    <MenuItem value="ADMIN">Administrator</MenuItem>
                  </TextField>
                </TableCell>
                <TableCell>
                  {user.disabled ? <Chip label="Disabled" color="error" size="small" /> : "Active"}
                </TableCell>
                <TableCell>
                  <Stack direction="row" spacing={1} sx={{ whiteSpace: "nowrap" }}>
                    <Button size="small" onClick={() => ask(user, "signOut")} aria-label={`Sign out ${user.username}`}>
                      Sign out
                    </Button>
                    {user.id !== me.data?.id && (
                      <Button
                        size="small"
                        color={user.disabled ? "primary" : "error"}
                        onClick={() => ask(user, user.disabled ? "enable" : "disable")}
                        aria-label={`${user.disabled ? "Enable" : "Disable"} ${user.username}`}
                      >
                        {user.disabled ? "Enable" : "Disable"}
                      </Button>
                    )}
                  </Stack>
                </TableCell>
              </TableRow>
            ))}
          </TableBody>
        </Table>
      </TableContainer>
      <Stack direction="row" spacing={2} sx={{ mt: 2 }} component="nav" aria-label="Pages">
        <Button disabled={tokens.length <= 1} onClick={() => setTokens(tokens.slice(0, -1))}>
          Previous page
        </Button>
        <Typography sx={{ alignSelf: "center" }}>Page {tokens.length}</Typography>
        <Button disabled={!next} onClick={() => setTokens([...tokens, next])}>
          Next page
        </Button>
      </Stack>
      <ConfirmDialog
        open={pending !== null}
        title={shown ? ACTIONS[shown.action].title(shown.user.username) : ""}
        confirm={shown ? ACTIONS[shown.action].confirm : ""}
        onConfirm={confirmAction}
        onClose={() => {
          setPending(null);
          setActionProblem(null);
        }}
        busy={signingOut.isLoading || disabling.isLoading || enabling.isLoading}
        problem={actionProblem}
      >
        {shown ? ACTIONS[shown.action].text : ""}
      </ConfirmDialog>
    </Page>
  );
}
