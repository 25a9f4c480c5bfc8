import Button from "@mui/material/Button";
import Dialog from "@mui/material/Dialog";
import DialogActions from "@mui/material/DialogActions";
import DialogContent from "@mui/material/DialogContent";
import DialogTitle from "@mui/material/DialogTitle";
import MenuItem from "@mui/material/MenuItem";
import Stack from "@mui/material/Stack";
import TextField from "@mui/material/TextField";
import { useEffect, useState, type FormEvent } from "react";

import { toProblem, type Problem } from "../api/errors";
import {
  useDataServiceCreateItemMutation,
  useDataServiceUpdateItem1Mutation,
  useLazyDataServiceGetItemQuery,
  type PinexaDataV1Item,
  type PinexaDataV1ItemRead,
  type PinexaDataV1ItemStatus,
} from "../api/generated";
import { ProblemAlert } from "../components/ProblemAlert";

export const STATUSES: PinexaDataV1ItemStatus[] = ["DRAFT", "PUBLISHED", "ARCHIVED"];

interface Form {
  title: string;
  content: string;
  status: PinexaDataV1ItemStatus;
  attributes: string;
}

function formOf(item: PinexaDataV1ItemRead | null): Form {
  return {
    title: item?.title ?? "",
    content: item?.content ?? "",
    status: item?.status ?? "DRAFT",
    attributes: JSON.stringify(item?.attributes ?? {}, null, 2),
  };
}

/** Parses the attributes box: a JSON object, or the reason it is not one. */
export function parseAttributes(text: string): { value?: PinexaDataV1Item["attributes"]; error?: string } {
  if (!text.trim()) return { value: {} };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { error: 'must be JSON, e.g. {"color": "red", "n": 3}' };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { error: "must be a JSON object: { … }" };
  }
  return { value: value as PinexaDataV1Item["attributes"] };
}

/** Create (item null) or edit an item: title, content, status and the free-form attributes. On
 * an etag conflict it says so and offers to load the latest version. */
export function ItemEditor({ item, open, onClose }: { item: PinexaDataV1ItemRead | null; open: boolean; onClose: () => void }) {
  const [create, creating] = useDataServiceCreateItemMutation();
  const [update, updating] = useDataServiceUpdateItem1Mutation();
  const [reload] = useLazyDataServiceGetItemQuery();
  const [base, setBase] = useState(item);
  const [form, setForm] = useState<Form>(formOf(item));
  const [problem, setProblem] = useState<Problem | null>(null);
  const [attributesError, setAttributesError] = useState<string | undefined>();

  useEffect(() => {
    if (open) {
      setBase(item);
      setForm(formOf(item));
      setProblem(null);
      setAttributesError(undefined);
    }
  }, [open, item]);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    const attributes = parseAttributes(form.attributes);
    setAttributesError(attributes.error);
    if (attributes.error) return;
    const body = { title: form.title, content: form.content, status: form.status, attributes: attributes.value };
    const result = base
      ? await update({
          id: base.id,
          updateMask: "title,content,status,attributes",
          pinexaDataV1Item: { ...body, etag: base.etag },
        })
      : await create({ body });
    if ("error" in result) setProblem(toProblem(result.error));
    else onClose();
  }

  async function loadLatest() {
    if (!base) return;
    const latest = await reload({ id: base.id });
    if (latest.data) {
      setBase(latest.data);
      setForm(formOf(latest.data));
      setProblem(null);
    } else {
      setProblem(toProblem(latest.error));
    }
  }

  const field = (name: "title" | "content") => ({
    name,
    value: form[name],
    onChange: (e: { target: { value: string } }) => setForm({ ...form, [name]: e.target.value }),
    error: Boolean(problem?.fields[name]),
    helperText: problem?.fields[name],
  });
  const title = base ? "Edit item" : "New item";

  return (
    <Dialog open={open} onClose={onClose} fullWidth maxWidth="sm" aria-labelledby="item-editor-title">
      <form onSubmit={submit} noValidate aria-label={title}>
        <DialogTitle id="item-editor-title">{title}</DialogTitle>
        <DialogContent>
          <Stack spacing={2} sx={{ pt: 1 }}>
            <ProblemAlert
              problem={problem}
              action={
                problem?.reason === "ETAG_MISMATCH" ? (
                  <Button color="inherit" onClick={loadLatest}>
                    Load latest
                  </Button>
                ) : undefined
              }
            />
            <TextField label="Title" required autoFocus {...field("title")} />
            <TextField label="Content" multiline minRows={3} {...field("content")} />
            <TextField
              select
              label="Status"
              name="status"
              value={form.status}
              onChange={(e) => setForm({ ...form, status: e.target.value as PinexaDataV1ItemStatus })}
            >
              {STATUSES.map((status) => (
                <MenuItem key={status} value={status}>
                  {status.charAt(0) + status.slice(1).toLowerCase()}
                </MenuItem>
              ))}
            </TextField>
            <TextField
              label="Attributes (JSON object)"
              name="attributes"
              multiline
              minRows={3}
              value={form.attributes}
              onChange={(e) => setForm({ ...form, attributes: e.target.value })}
              error={Boolean(attributesError ?? problem?.fields.attributes)}
              helperText={attributesError ?? problem?.fields.attributes ?? 'Free-form, e.g. {"color": "red", "n": 3}'}
              slotProps={{ htmlInput: { spellCheck: false, style: { fontFamily: "monospace" } } }}
            />
          </Stack>
        </DialogContent>
        <DialogActions>
          <Button onClick={onClose}>Cancel</Button>
          <Button type="submit" variant="contained" disabled={creating.isLoading || updating.isLoading}>
            Save
          </Button>
        </DialogActions>
      </form>
    </Dialog>
  );
}
