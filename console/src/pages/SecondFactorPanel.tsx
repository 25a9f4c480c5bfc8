import Alert from "@mui/material/Alert";
import Button from "@mui/material/Button";
import Dialog from "@mui/material/Dialog";
import DialogContent from "@mui/material/DialogContent";
import DialogTitle from "@mui/material/DialogTitle";
import Paper from "@mui/material/Paper";
import Stack from "@mui/material/Stack";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useId, useRef, useState, type FormEvent } from "react";

import { toProblem, type Problem } from "../api/errors";
import {
  useUserServiceActivateTotpMutation,
  useUserServiceDisableTotpMutation,
  useUserServiceEnrollTotpMutation,
  useUserServiceRegenerateRecoveryCodesMutation,
  type PinexaUsersV1EnrollTotpResponse,
} from "../api/generated";
import { authMethods, reauthenticate } from "../auth/session";
import { ProblemAlert } from "../components/ProblemAlert";
import { SecondFactorForm } from "../components/SecondFactorForm";

type Outcome<T> = { data: T } | { error: unknown };

/** The QR code the API drew (an SVG document), as an image: a data: URL in an <img>, so none of
 * its markup ever becomes part of the page (no innerHTML). */
export function qrImageSource(svg: string): string {
  return `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
}

/** Step-up: a change that answers REAUTHENTICATION_REQUIRED asks for a code, calls
 * reauthenticate (a new access token) and is tried again once. */
function useStepUp() {
  const [asking, setAsking] = useState(false);
  const answer = useRef<(ok: boolean) => void>(() => undefined);
  const id = useId();

  async function run<T>(call: () => Promise<Outcome<T>>): Promise<Outcome<T>> {
    const first = await call();
    if (!("error" in first) || toProblem(first.error)?.reason !== "REAUTHENTICATION_REQUIRED") return first;
    const ok = await new Promise<boolean>((resolve) => {
      answer.current = resolve;
      setAsking(true);
    });
    setAsking(false);
    return ok ? call() : first;
  }

  const dialog = (
    <Dialog open={asking} onClose={() => answer.current(false)} aria-labelledby={`${id}-title`}>
      <DialogTitle id={`${id}-title`}>Confirm it is you</DialogTitle>
      <DialogContent>
        <SecondFactorForm
          label="Confirm with your second factor"
          send={reauthenticate}
          onDone={() => answer.current(true)}
          onCancel={() => answer.current(false)}
          cancel="Cancel"
        />
      </DialogContent>
    </Dialog>
  );
  return { run, dialog };
}

function RecoveryCodes({ codes, onSaved }: { codes: string[]; onSaved: () => void }) {
  return (
    <Stack spacing={1} sx={{ alignItems: "flex-start" }}>
      <Alert severity="warning" role="status">
        Save these recovery codes somewhere safe: they are shown only now. Each one signs you in once
        if you lose your authenticator.
      </Alert>
      <Typography component="ol" aria-label="Recovery codes" sx={{ fontFamily: "monospace", display: "grid", gridTemplateColumns: "repeat(2, max-content)", columnGap: 4, listStyle: "none", p: 0, m: 0 }}>
        {codes.map((code) => (
          <li key={code}>{code}</li>
        ))}
      </Typography>
      <Button variant="contained" onClick={onSaved}>
        I have saved them
      </Button>
    </Stack>
  );
}

/** Enrolment: the QR code and the secret for typing by hand, then the first code activates. */
function Enrolment({ enrolment, userId, onActivated }: {
  enrolment: PinexaUsersV1EnrollTotpResponse;
  userId: string;
  onActivated: (codes: string[]) => void;
}) {
  const [activate, { isLoading }] = useUserServiceActivateTotpMutation();
  const [code, setCode] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    const result = await activate({ id: userId, body: { code: code.replace(/\s+/g, "") } });
    if ("error" in result) setProblem(toProblem(result.error));
    else onActivated(result.data.recovery_codes ?? []);
  }

  return (
    <Stack component="form" spacing={2} onSubmit={submit} noValidate aria-label="Set up the second factor">
      <Typography>
        Scan this code with an authenticator app (such as Google Authenticator, Aegis or 1Password), then
        enter the 6-digit code it shows.
      </Typography>
      {enrolment.qr_svg && (
        <img
          src={qrImageSource(enrolment.qr_svg)}
          alt="QR code to add this account to an authenticator app"
          width={200}
          height={200}
          style={{ background: "#fff" }}
        />
      )}
      <Typography variant="body2">
        Or type this key into the app: <code aria-label="Secret key">{enrolment.secret}</code>
      </Typography>
      <ProblemAlert problem={problem} />
      <TextField
        label="Code from the app"
        name="code"
        autoComplete="one-time-code"
        inputProps={{ inputMode: "numeric", maxLength: 6 }}
        value={code}
        onChange={(e) => setCode(e.target.value)}
        error={Boolean(problem?.fields.code)}
        helperText={problem?.fields.code}
        required
      />
      <Button type="submit" variant="contained" disabled={isLoading || !code.trim()} sx={{ alignSelf: "flex-start" }}>
        Turn on
      </Button>
    </Stack>
  );
}

/** The profile's second factor (TOTP): set up with a QR code, recovery codes shown once, new
 * recovery codes and turning it off (both ask for a fresh code: step-up). Whether the account
 * has a factor is read from the session's `amr` (the User resource does not say); a session
 * opened before it was turned on learns it from the API's TOTP_ALREADY_ENABLED. */
export function SecondFactorPanel({ userId }: { userId: string }) {
  const [enabled, setEnabled] = useState(() => authMethods().includes("otp"));
  const [enrolment, setEnrolment] = useState<PinexaUsersV1EnrollTotpResponse | null>(null);
  const [codes, setCodes] = useState<string[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [notice, setNotice] = useState("");
  const [enroll, enrolling] = useUserServiceEnrollTotpMutation();
  const [disable, disabling] = useUserServiceDisableTotpMutation();
  const [regenerate, regenerating] = useUserServiceRegenerateRecoveryCodesMutation();
  const stepUp = useStepUp();

  function reset() {
    setProblem(null);
    setNotice("");
  }

  async function start() {
    reset();
    const result = await enroll({ id: userId, body: {} });
    if (!("error" in result)) {
      setEnrolment(result.data);
      return;
    }
    const found = toProblem(result.error);
    if (found?.reason === "TOTP_ALREADY_ENABLED") setEnabled(true);
    setProblem(found);
  }

  async function turnOff() {
    reset();
    const result = await stepUp.run(() => disable({ id: userId, body: {} }));
    if ("error" in result) setProblem(toProblem(result.error));
    else {
      setEnabled(false);
      setNotice("The second factor is off. Signing in needs only your password now.");
    }
  }

  async function newCodes() {
    reset();
    const result = await stepUp.run(() => regenerate({ id: userId, body: {} }));
    if ("error" in result) setProblem(toProblem(result.error));
    else setCodes(result.data?.recovery_codes ?? []);
  }

  return (
    <Paper sx={{ p: 3, maxWidth: 520 }} component="section" aria-labelledby="second-factor-title">
      <Stack spacing={2}>
        <Typography variant="h5" component="h2" id="second-factor-title">
          Second factor
        </Typography>
        <ProblemAlert problem={problem} />
        {notice && <Alert severity="success" role="status">{notice}</Alert>}
        {codes ? (
          <RecoveryCodes codes={codes} onSaved={() => setCodes(null)} />
        ) : enrolment ? (
          <Enrolment
            enrolment={enrolment}
            userId={userId}
            onActivated={(recovery) => {
              setEnrolment(null);
              setEnabled(true);
              setCodes(recovery);
              setNotice("The second factor is on: signing in asks for a code from your app.");
            }}
          />
        ) : enabled ? (
          <>
            <Typography>Signing in asks for a code from your authenticator app.</Typography>
            <Stack direction="row" spacing={2}>
              <Button variant="outlined" onClick={newCodes} disabled={regenerating.isLoading}>
                New recovery codes
              </Button>
              <Button variant="outlined" color="error" onClick={turnOff} disabled={disabling.isLoading}>
                Turn off
              </Button>
            </Stack>
          </>
        ) : (
          <>
            <Typography>
              Protect your account with a code from an authenticator app, asked for after your password.
            </Typography>
            <Button variant="contained" onClick={start} disabled={enrolling.isLoading} sx={{ alignSelf: "flex-start" }}>
              Set up
            </Button>
          </>
        )}
      </Stack>
      {stepUp.dialog}
    </Paper>
  );
}
