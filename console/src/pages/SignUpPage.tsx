import Button from "@mui/material/Button";
import Link from "@mui/material/Link";
import Paper from "@mui/material/Paper";
import Stack from "@mui/material/Stack";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useState, type FormEvent } from "react";
import { Link as RouterLink, useNavigate } from "react-router-dom";

import { toProblem, type Problem } from "../api/errors";
import { useUserServiceCreateUserMutation } from "../api/generated";
import { SessionError, signIn } from "../auth/session";
import { Page } from "../components/Page";
import { ProblemAlert } from "../components/ProblemAlert";

export function SignUpPage() {
  const navigate = useNavigate();
  const [createUser, { isLoading }] = useUserServiceCreateUserMutation();
  const [form, setForm] = useState({ username: "", email: "", display_name: "", password: "" });
  const [problem, setProblem] = useState<Problem | null>(null);
  const set = (name: keyof typeof form) => (e: { target: { value: string } }) =>
    setForm({ ...form, [name]: e.target.value });

  async function submit(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    const result = await createUser({ body: form });
    if ("error" in result) {
      setProblem(toProblem(result.error));
      return;
    }
    try {
      await signIn({ username: form.username, password: form.password });
      navigate("/items", { replace: true });
    } catch (error) {
      setProblem(error instanceof SessionError ? error.problem : null);
    }
  }

  const field = (name: keyof typeof form) => ({
    name,
    value: form[name],
    onChange: set(name),
    error: Boolean(problem?.fields[name]),
    helperText: problem?.fields[name],
  });

  return (
    <Page title="Create an account">
      <Paper component="form" onSubmit={submit} noValidate sx={{ p: 3, maxWidth: 480 }} aria-label="Create an account">
        <Stack spacing={2}>
          <ProblemAlert problem={problem} />
          <TextField label="Username" autoComplete="username" required autoFocus {...field("username")}
            helperText={problem?.fields.username ?? "3 to 32 characters: a-z, 0-9, _ . -"} />
          <TextField label="E-mail" type="email" autoComplete="email" required {...field("email")} />
          <TextField label="Display name" autoComplete="name" {...field("display_name")} />
          <TextField label="Password" type="password" autoComplete="new-password" required {...field("password")}
            helperText={problem?.fields.password ?? "At least 10 characters"} />
          <Button type="submit" variant="contained" disabled={isLoading}>
            Create account
          </Button>
          <Typography>
            Have an account?{" "}
            <Link component={RouterLink} to="/signin">
              Sign in
            </Link>
          </Typography>
        </Stack>
      </Paper>
    </Page>
  );
}
