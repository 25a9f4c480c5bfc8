import CssBaseline from "@mui/material/CssBaseline";
import { ThemeProvider, createTheme } from "@mui/material/styles";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { Provider } from "react-redux";
import { BrowserRouter } from "react-router-dom";

import { App } from "./App";
import { restore } from "./auth/session";
import { makeStore } from "./store";

// System fonts only: nothing is fetched from the internet at run time.
const theme = createTheme({
  typography: { fontFamily: 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif' },
  components: {
    MuiCssBaseline: {
      styleOverrides: {
        ".skip-link": { position: "absolute", left: -9999, top: 0, zIndex: 2000, padding: 8, background: "#fff", color: "#0d47a1" },
        ".skip-link:focus": { left: 8 },
        ".visually-hidden": { position: "absolute", width: 1, height: 1, overflow: "hidden", clip: "rect(0 0 0 0)", whiteSpace: "nowrap" },
      },
    },
  },
});

void restore();

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <Provider store={makeStore()}>
      <ThemeProvider theme={theme}>
        <CssBaseline />
        <BrowserRouter>
          <App />
        </BrowserRouter>
      </ThemeProvider>
    </Provider>
  </StrictMode>,
);
