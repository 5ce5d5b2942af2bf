import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { BrowserRouter } from "react-router";
import { App } from "./App";
import { AuthSession } from "./api/session";
import { createShopTransport } from "./api/transport";
import { ApiProvider } from "./api/use-client";
import { CartProvider } from "./cart/CartContext";
import { CartStore } from "./cart/cart";
import { CurrencyProvider } from "./currency/CurrencyContext";
import { ShopCart } from "./cart/shop-cart";
import "./styles.css";

// Built once at start and passed down (no import-time singletons): tests build their own.
const session = new AuthSession(window.sessionStorage);
const transport = createShopTransport(session);
// The server's cart while signed in; the browser's (merged in on sign-in) while not.
const cart = new ShopCart(new CartStore(window.localStorage), session, transport);
// A reload keeps the refresh token only: get a fresh access token before the first page.
if (session.signedIn) void session.refresh();

createRoot(document.getElementById("root") as HTMLElement).render(
  <StrictMode>
    <ApiProvider transport={transport} session={session}>
      <CurrencyProvider storage={window.localStorage}>
        <CartProvider store={cart}>
          <BrowserRouter>
            <App />
          </BrowserRouter>
        </CartProvider>
      </CurrencyProvider>
    </ApiProvider>
  </StrictMode>,
);
