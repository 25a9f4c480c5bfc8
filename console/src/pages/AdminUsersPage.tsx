import Button from "@mui/material/Button";
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
  useUserServiceListUsersQuery,
  useUserServiceUpdateUser1Mutation,
  type PinexaUsersV1UserRead,
  type PinexaUsersV1UserRole,
} from "../api/generated";
import { Page } from "../components/Page";
import { ProblemAlert } from "../components/ProblemAlert";

const PAGE_SIZE = 20;

/** Admins: every account, oldest first, with its role. Signing a user out and disabling an
 * account come with issue 12 (their API does not exist yet). */
export function AdminUsersPage() {
  const [tokens, setTokens] = useState<string[]>([""]);
  const list = useUserServiceListUsersQuery({ pageSize: PAGE_SIZE, pageToken: tokens[tokens.length - 1] || undefined });
  const [update] = useUserServiceUpdateUser1Mutation();
  const [problem, setProblem] = useState<Problem | null>(null);
  const users = list.data?.users ?? [];
  const next = list.data?.next_page_token ?? "";

  async function setRole(user: PinexaUsersV1UserRead, role: PinexaUsersV1UserRole) {
    setProblem(null);
    const result = await update({ id: user.id, updateMask: "role", pinexaUsersV1User: { role, etag: user.etag } });
    if ("error" in result) setProblem(toProblem(result.error));
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
      {list.isFetching && <LinearProgress aria-label="Loading accounts" />}
      <TableContainer component={Paper}>
        <Table aria-label="Users">
          <TableHead>
            <TableRow>
              <TableCell component="th" scope="col">Username</TableCell>
              <TableCell component="th" scope="col">E-mail</TableCell>
              <TableCell component="th" scope="col">Display name</TableCell>
              <TableCell component="th" scope="col">Created</TableCell>
              <TableCell component="th" scope="col">Role</TableCell>
            </TableRow>
          </TableHead>
          <TableBody>
            {users.map((user) => (
              <TableRow key={user.id}>
                <TableCell component="th" scope="row">{user.username}</TableCell>
                <TableCell>{user.email}</TableCell>
                <TableCell>{user.display_name}</TableCell>
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
    </Page>
  );
}
