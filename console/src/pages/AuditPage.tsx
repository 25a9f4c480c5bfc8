import Button from "@mui/material/Button";
import LinearProgress from "@mui/material/LinearProgress";
import MenuItem from "@mui/material/MenuItem";
import Paper from "@mui/material/Paper";
import Stack from "@mui/material/Stack";
import Table from "@mui/material/Table";
import TableBody from "@mui/material/TableBody";
import TableCell from "@mui/material/TableCell";
import TableHead from "@mui/material/TableHead";
import TableRow from "@mui/material/TableRow";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useState, type FormEvent } from "react";

import { toProblem } from "../api/errors";
import { useUserServiceListAuditEventsQuery } from "../api/generated";
import { Page } from "../components/Page";
import { ProblemAlert } from "../components/ProblemAlert";

const PAGE_SIZES = [10, 25, 50, 100];
const OUTCOMES = ["", "SUCCESS", "FAILURE", "REFUSED"];

interface Filters {
  type: string;
  outcome: string;
  actor_id: string;
  subject_id: string;
  since: string;
}

const EMPTY: Filters = { type: "", outcome: "", actor_id: "", subject_id: "", since: "" };

/** The form's fields as the API's AIP-160 filter: each given field an `=`, joined by AND; the
 * values quoted (JSON string escaping), so nothing typed can change the filter's shape. */
export function auditFilter(filters: Filters): string {
  const parts: string[] = [];
  for (const name of ["type", "outcome", "actor_id", "subject_id"] as const) {
    const value = filters[name].trim();
    if (value) parts.push(`${name} = ${JSON.stringify(name === "type" ? value.toUpperCase() : value)}`);
  }
  if (filters.since) {
    const since = new Date(filters.since);
    if (!Number.isNaN(since.getTime())) parts.push(`occurred_at >= ${JSON.stringify(since.toISOString())}`);
  }
  return parts.join(" AND ");
}

function details(detail?: Record<string, string>): string {
  return Object.entries(detail ?? {})
    .map(([key, value]) => `${key}: ${value}`)
    .join(", ");
}

/** The admins' audit trail: every account's security events, newest first, filtered by type,
 * outcome, actor, subject and time, paged with the API's page tokens (next and previous). */
export function AuditPage() {
  const [form, setForm] = useState<Filters>(EMPTY);
  const [filter, setFilter] = useState("");
  const [pageSize, setPageSize] = useState(25);
  const [tokens, setTokens] = useState<string[]>([""]); // the page token of each page seen
  const pageToken = tokens[tokens.length - 1];
  const list = useUserServiceListAuditEventsQuery({ pageSize, pageToken: pageToken || undefined, filter: filter || undefined });
  const events = list.data?.audit_events ?? [];
  const next = list.data?.next_page_token ?? "";

  function apply(event: FormEvent) {
    event.preventDefault();
    setFilter(auditFilter(form));
    setTokens([""]);
  }

  const field = (name: keyof Filters) => ({
    name,
    value: form[name],
    onChange: (e: { target: { value: string } }) => setForm({ ...form, [name]: e.target.value }),
    size: "small" as const,
  });

  return (
    <Page title="Audit trail">
      <Paper component="form" onSubmit={apply} noValidate sx={{ p: 2, mb: 2 }} aria-label="Filter the audit trail">
        <Stack direction={{ xs: "column", md: "row" }} spacing={2} sx={{ alignItems: { md: "center" } }}>
          <TextField label="Type" placeholder="LOGIN_FAILED" {...field("type")} />
          <TextField select label="Outcome" sx={{ minWidth: 140 }} {...field("outcome")}>
            {OUTCOMES.map((o) => (
              <MenuItem key={o} value={o}>
                {o || "Any"}
              </MenuItem>
            ))}
          </TextField>
          <TextField label="Actor id" {...field("actor_id")} />
          <TextField label="Subject id" {...field("subject_id")} />
          <TextField label="Since" type="datetime-local" InputLabelProps={{ shrink: true }} {...field("since")} />
          <Button type="submit" variant="contained">
            Apply
          </Button>
        </Stack>
      </Paper>
      <ProblemAlert problem={toProblem(list.error)} />
      {list.isFetching && <LinearProgress aria-label="Loading events" />}
      <Paper sx={{ overflowX: "auto" }}>
        <Table size="small" aria-label="Audit events">
          <TableHead>
            <TableRow>
              <TableCell>When</TableCell>
              <TableCell>Type</TableCell>
              <TableCell>Outcome</TableCell>
              <TableCell>Actor</TableCell>
              <TableCell>Subject</TableCell>
              <TableCell>Address</TableCell>
              <TableCell>Details</TableCell>
            </TableRow>
          </TableHead>
          <TableBody>
            {events.map((e) => (
              <TableRow key={e.id}>
                <TableCell>{e.occurred_at ? new Date(e.occurred_at).toLocaleString() : ""}</TableCell>
                <TableCell component="th" scope="row">{e.type}</TableCell>
                <TableCell>{e.outcome}</TableCell>
                <TableCell sx={{ fontFamily: "monospace" }}>{e.actor_id}</TableCell>
                <TableCell sx={{ fontFamily: "monospace" }}>{e.subject_id}</TableCell>
                <TableCell>{e.client_address}</TableCell>
                <TableCell>{details(e.detail)}</TableCell>
              </TableRow>
            ))}
          </TableBody>
        </Table>
        {!list.isFetching && events.length === 0 && !list.error && (
          <Typography sx={{ p: 2 }}>No events match.</Typography>
        )}
      </Paper>
      <Stack direction="row" spacing={2} sx={{ mt: 2, alignItems: "center" }}>
        <TextField
          select
          size="small"
          label="Per page"
          value={String(pageSize)}
          onChange={(e) => {
            setPageSize(Number(e.target.value));
            setTokens([""]);
          }}
          sx={{ minWidth: 110 }}
        >
          {PAGE_SIZES.map((n) => (
            <MenuItem key={n} value={String(n)}>
              {n}
            </MenuItem>
          ))}
        </TextField>
        <Button variant="outlined" disabled={tokens.length < 2} onClick={() => setTokens(tokens.slice(0, -1))}>
          Previous page
        </Button>
        <Button variant="outlined" disabled={!next} onClick={() => setTokens([...tokens, next])}>
          Next page
        </Button>
      </Stack>
    </Page>
  );
}
