import AppBar from "@mui/material/AppBar";
import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import CircularProgress from "@mui/material/CircularProgress";
import Container from "@mui/material/Container";
import Link from "@mui/material/Link";
import Toolbar from "@mui/material/Toolbar";
import Typography from "@mui/material/Typography";
import { useEffect, type ReactNode } from "react";
import { useDispatch } from "react-redux";
import { Navigate, NavLink, Route, Routes, useLocation, useNavigate } from "react-router-dom";

import { baseApi } from "./api/base";
import { toProblem } from "./api/errors";
import { useUserServiceGetMeQuery } from "./api/generated";
import { signOut } from "./auth/session";
import { useSession } from "./auth/useSession";
import { Page } from "./components/Page";
import { ProblemAlert } from "./components/ProblemAlert";
import { AdminUsersPage } from "./pages/AdminUsersPage";
import { AuditPage } from "./pages/AuditPage";
import { ItemsPage } from "./pages/ItemsPage";
import { ProfilePage } from "./pages/ProfilePage";
import { ResetPasswordPage } from "./pages/ResetPasswordPage";
import { SignInPage } from "./pages/SignInPage";
import { SignUpPage } from "./pages/SignUpPage";
import { VerifyEmailPage } from "./pages/VerifyEmailPage";

function NavButton({ to, children }: { to: string; children: ReactNode }) {
  return (
    <Button component={NavLink} to={to} color="inherit" sx={{ "&.active": { textDecoration: "underline" } }}>
      {children}
    </Button>
  );
}

function Header() {
  const { token } = useSession();
  const me = useUserServiceGetMeQuery(undefined, { skip: !token });
  const dispatch = useDispatch();
  const navigate = useNavigate();
  const admin = me.data?.role === "ADMIN";
  return (
    <AppBar position="static" component="header">
      <Toolbar component="nav" aria-label="Main" sx={{ gap: 1, flexWrap: "wrap" }}>
        <Typography variant="h6" component="p" sx={{ mr: 2 }}>
          Pinexa
        </Typography>
        {token ? (
          <>
            <NavButton to="/items">Items</NavButton>
            <NavButton to="/profile">Profile</NavButton>
            {admin && <NavButton to="/admin/users">Users</NavButton>}
            {admin && <NavButton to="/admin/items">All items</NavButton>}
            {admin && <NavButton to="/admin/audit">Audit trail</NavButton>}
            <Box sx={{ flex: 1 }} />
            {me.data && <Typography component="p">{me.data.display_name || me.data.username}</Typography>}
            <Button
              color="inherit"
              variant="outlined"
              onClick={async () => {
                await signOut().catch(() => undefined);
                dispatch(baseApi.util.resetApiState());
                navigate("/signin");
              }}
            >
              Sign out
            </Button>
          </>
        ) : (
          <>
            <Box sx={{ flex: 1 }} />
            <NavButton to="/signin">Sign in</NavButton>
            <NavButton to="/signup">Sign up</NavButton>
          </>
        )}
      </Toolbar>
    </AppBar>
  );
}

/** Signed-in pages: without a session, go to sign in (and come back after). */
function RequireSession({ children }: { children: ReactNode }) {
  const { token } = useSession();
  const location = useLocation();
  if (!token) return <Navigate to="/signin" replace state={{ from: location.pathname }} />;
  return <>{children}</>;
}

/** Admin pages: a user who is not an admin is told so; the API refuses them too (ADMIN_ONLY). */
function RequireAdmin({ children }: { children: ReactNode }) {
  const me = useUserServiceGetMeQuery();
  if (me.isLoading) return <CircularProgress aria-label="Loading" />;
  if (me.error) return <ProblemAlert problem={toProblem(me.error)} />;
  if (me.data?.role !== "ADMIN") {
    return (
      <Page title="Administrators only">
        <ProblemAlert problem={{ status: 403, reason: "ADMIN_ONLY", fields: {}, text: "Only an administrator may see this page." }} />
      </Page>
    );
  }
  return <>{children}</>;
}

function NotFound() {
  return (
    <Page title="Page not found">
      <Typography>
        There is no such page. <Link component={NavLink} to="/items">Go to your items</Link>.
      </Typography>
    </Page>
  );
}

export function App() {
  const { token, ready } = useSession();
  useEffect(() => {
    document.documentElement.lang = "en";
  }, []);
  return (
    <>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <Header />
      <Container component="main" id="main" tabIndex={-1} sx={{ py: 4 }}>
        {!ready ? (
          <CircularProgress aria-label="Loading" />
        ) : (
          <Routes>
            <Route path="/" element={<Navigate to={token ? "/items" : "/signin"} replace />} />
            <Route path="/signin" element={token ? <Navigate to="/items" replace /> : <SignInPage />} />
            <Route path="/signup" element={token ? <Navigate to="/items" replace /> : <SignUpPage />} />
            <Route path="/verify-email" element={<VerifyEmailPage />} />
            <Route path="/reset-password" element={<ResetPasswordPage />} />
            <Route path="/items" element={<RequireSession><ItemsPage /></RequireSession>} />
            <Route path="/profile" element={<RequireSession><ProfilePage /></RequireSession>} />
            <Route path="/admin/users" element={<RequireSession><RequireAdmin><AdminUsersPage /></RequireAdmin></RequireSession>} />
            <Route path="/admin/items" element={<RequireSession><RequireAdmin><ItemsPage admin /></RequireAdmin></RequireSession>} />
            <Route path="/admin/audit" element={<RequireSession><RequireAdmin><AuditPage /></RequireAdmin></RequireSession>} />
            <Route path="*" element={<NotFound />} />
          </Routes>
        )}
      </Container>
    </>
  );
}
