import Button from "@mui/material/Button";
import Dialog from "@mui/material/Dialog";
import DialogActions from "@mui/material/DialogActions";
import DialogContent from "@mui/material/DialogContent";
import DialogContentText from "@mui/material/DialogContentText";
import DialogTitle from "@mui/material/DialogTitle";
import { useId, type ReactNode } from "react";

import type { Problem } from "../api/errors";
import { ProblemAlert } from "./ProblemAlert";

/** "Are you sure?" before something that cannot be undone from here. Cancel has the focus (so
 * Enter does no harm); the dialog traps focus and gives it back when it closes (Material UI). */
export function ConfirmDialog({
  open,
  title,
  children,
  confirm,
  onConfirm,
  onClose,
  busy = false,
  problem = null,
}: {
  open: boolean;
  title: string;
  children: ReactNode;
  /** The confirming button's words ("Delete", "Disable"). */
  confirm: string;
  onConfirm: () => void;
  onClose: () => void;
  busy?: boolean;
  problem?: Problem | null;
}) {
  const id = useId();
  return (
    <Dialog open={open} onClose={onClose} aria-labelledby={`${id}-title`} aria-describedby={`${id}-text`}>
      <DialogTitle id={`${id}-title`}>{title}</DialogTitle>
      <DialogContent>
        <DialogContentText id={`${id}-text`}>{children}</DialogContentText>
        <ProblemAlert problem={problem} />
      </DialogContent>
      <DialogActions>
        <Button onClick={onClose} autoFocus>
          Cancel
        </Button>
        <Button color="error" variant="contained" onClick={onConfirm} disabled={busy}>
          {confirm}
        </Button>
      </DialogActions>
    </Dialog>
  );
}
