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
import { useState, type FormEvent } from "react";

import { toProblem, type Problem } from "../api/errors";
import {
  useDataServiceDeleteItemMutation,
  useDataServiceListItemsQuery,
  useUserServiceListUsersQuery,
  type DataServiceListItemsApiArg,
  type PinexaDataV1ItemRead,
} from "../api/generated";
import { Page } from "../components/Page";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { ProblemAlert } from "../components/ProblemAlert";
import { ItemEditor } from "./ItemEditor";

type Order = NonNullable<DataServiceListItemsApiArg["orderBy"]>;
const ORDERS: Array<[Order, string]> = [
  ["created_at desc", "Newest first"],
  ["updated_at desc", "Recently changed"],
  ["title", "Title A–Z"],
];
const PAGE_SIZE = 10;

/** An AIP-160 string literal: "…" with \ and " escaped. */
export function quoted(value: string): string {
  return `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** The filter sent: the owner (admin view) and what the person typed, both must hold. */
export function combinedFilter(owner: string, filter: string): string {
  const parts = [];
  if (owner) parts.push(`user_id = ${quoted(owner)}`);
  if (filter.trim()) parts.push(owner ? `(${filter.trim()})` : filter.trim());
  return parts.join(" AND ");
}

function attributesText(item: PinexaDataV1ItemRead): string {
  const text = JSON.stringify(item.attributes ?? {});
  return text === "{}" ? "" : text.length > 60 ? `${text.slice(0, 57)}…` : text;
}

/** The items list: filter, full-text search, sort and keyset paging; create, edit, delete.
 * `admin`: every owner's items, with an owner picker (an admin's list spans all accounts). */
export function ItemsPage({ admin = false }: { admin?: boolean }) {
  const [draft, setDraft] = useState({ filter: "", query: "", orderBy: "created_at desc" as Order, owner: "" });
  const [applied, setApplied] = useState(draft);
  const [tokens, setTokens] = useState<string[]>([""]);
  const [editing, setEditing] = useState<PinexaDataV1ItemRead | null>(null);
  const [editorOpen, setEditorOpen] = useState(false);
  const [deleting, setDeleting] = useState<PinexaDataV1ItemRead | null>(null);
  const [deleteProblem, setDeleteProblem] = useState<Problem | null>(null);
  const [remove, removing] = useDataServiceDeleteItemMutation();
  const users = useUserServiceListUsersQuery({ pageSize: 100 }, { skip: !admin });

  const list = useDataServiceListItemsQuery({
    pageSize: PAGE_SIZE,
    pageToken: tokens[tokens.length - 1] || undefined,
    filter: combinedFilter(applied.owner, applied.filter) || undefined,
    query: applied.query.trim() || undefined,
    orderBy: applied.orderBy,
  });
  const items = list.data?.items ?? [];
  const next = list.data?.next_page_token ?? "";
  const problem = toProblem(list.error);
  const owners = new Map((users.data?.users ?? []).map((user) => [user.id as string, user.username as string]));

  function apply(event: FormEvent) {
    event.preventDefault();
    setApplied(draft);
    setTokens([""]);
  }

  async function confirmDelete() {
    if (!deleting) return;
    const result = await remove({ id: deleting.id, etag: deleting.etag });
    if ("error" in result) setDeleteProblem(toProblem(result.error));
    else setDeleting(null);
  }

  const title = admin ? "All items" : "Your items";
  return (
    <Page
      title={title}
      actions={
        <Button variant="contained" onClick={() => { setEditing(null); setEditorOpen(true); }}>
          New item
        </Button>
      }
    >
      <Paper component="form" onSubmit={apply} sx={{ p: 2, mb: 2 }} aria-label="Find items" role="search">
        <Stack direction={{ xs: "column", md: "row" }} spacing={2} alignItems={{ md: "flex-start" }}>
          {admin && (
            <TextField
              select
              label="Owner"
              name="owner"
              value={draft.owner}
              onChange={(e) => setDraft({ ...draft, owner: e.target.value })}
              sx={{ minWidth: 180 }}
            >
              <MenuItem value="">All owners</MenuItem>
              {[...owners].map(([id, name]) => (
                <MenuItem key={id} value={id}>
                  {name}
                </MenuItem>
              ))}
            </TextField>
          )}
          <TextField
            label="Search"
            name="query"
            type="search"
            value={draft.query}
            onChange={(e) => setDraft({ ...draft, query: e.target.value })}
            helperText="Words in title or content"
          />
          <TextField
            label="Filter"
            name="filter"
            value={draft.filter}
            onChange={(e) => setDraft({ ...draft, filter: e.target.value })}
            helperText='e.g. status = "PUBLISHED" AND attributes.n >= 3'
            error={problem?.reason === "INVALID_FILTER"}
            sx={{ flex: 1 }}
            slotProps={{ htmlInput: { spellCheck: false } }}
          />
          <TextField
            select
            label="Sort"
            name="order_by"
            value={draft.orderBy}
            onChange={(e) => setDraft({ ...draft, orderBy: e.target.value as Order })}
            sx={{ minWidth: 170 }}
          >
            {ORDERS.map(([value, label]) => (
              <MenuItem key={value} value={value}>
                {label}
              </MenuItem>
            ))}
          </TextField>
          <Button type="submit" variant="outlined" sx={{ height: 56 }}>
            Apply
          </Button>
        </Stack>
      </Paper>

      <ProblemAlert problem={problem} />
      {list.isFetching && <LinearProgress aria-label="Loading items" />}
      <TableContainer component={Paper}>
        <Table aria-label={title}>
          <TableHead>
            <TableRow>
              <TableCell component="th" scope="col">Title</TableCell>
              {admin && <TableCell component="th" scope="col">Owner</TableCell>}
              <TableCell component="th" scope="col">Status</TableCell>
              <TableCell component="th" scope="col">Attributes</TableCell>
              <TableCell component="th" scope="col">Changed</TableCell>
              <TableCell component="th" scope="col"><span className="visually-hidden">Actions</span></TableCell>
            </TableRow>
          </TableHead>
          <TableBody>
            {items.map((item) => (
              <TableRow key={item.id}>
                <TableCell component="th" scope="row">{item.title}</TableCell>
                {admin && <TableCell>{owners.get(item.user_id ?? "") ?? item.user_id}</TableCell>}
                <TableCell>
                  <Chip size="small" label={item.status} variant="outlined" />
                </TableCell>
                <TableCell sx={{ fontFamily: "monospace" }}>{attributesText(item)}</TableCell>
                <TableCell>{item.updated_at ? new Date(item.updated_at).toLocaleString() : ""}</TableCell>
                <TableCell align="right" sx={{ whiteSpace: "nowrap" }}>
                  <Button size="small" onClick={() => { setEditing(item); setEditorOpen(true); }}
                    aria-label={`Edit ${item.title}`}>
                    Edit
                  </Button>
                  <Button size="small" color="error" onClick={() => { setDeleteProblem(null); setDeleting(item); }}
                    aria-label={`Delete ${item.title}`}>
                    Delete
                  </Button>
                </TableCell>
              </TableRow>
            ))}
            {!list.isLoading && items.length === 0 && (
              <TableRow>
                <TableCell colSpan={admin ? 6 : 5}>
                  <Typography>No items{applied.filter || applied.query || applied.owner ? " match" : " yet"}.</Typography>
                </TableCell>
              </TableRow>
            )}
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

      <ItemEditor item={editing} open={editorOpen} onClose={() => setEditorOpen(false)} />
      <ConfirmDialog
        open={deleting !== null}
        title={`Delete “${deleting?.title ?? ""}”?`}
        confirm="Delete"
        onConfirm={confirmDelete}
        onClose={() => setDeleting(null)}
        busy={removing.isLoading}
        problem={deleteProblem}
      >
        The item is deleted for good.
      </ConfirmDialog>
    </Page>
  );
}
