/** Layout (landmarks: header/nav, main, footer) and routes. */
import { AuthService } from "@gen/shop/auth/v1/auth_pb.js";
import { useEffect, useRef } from "react";
import { Link, NavLink, Outlet, Route, Routes, useLocation, useNavigate } from "react-router";
import { useClient, useSession } from "./api/use-client";
import { useCart } from "./cart/CartContext";
import { cartCount } from "./cart/cart";
import { CurrencySwitch } from "./currency/CurrencySwitch";
import { AdminPage } from "./pages/AdminPage";
import { CartPage } from "./pages/CartPage";
import { CatalogPage } from "./pages/CatalogPage";
import { CheckoutPage } from "./pages/CheckoutPage";
import { LoginPage } from "./pages/LoginPage";
import { NotFoundPage } from "./pages/NotFoundPage";
import { NotificationsPage } from "./pages/NotificationsPage";
import { OpsPage } from "./pages/OpsPage";
import { OrderDetailPage } from "./pages/OrderDetailPage";
import { OrdersPage } from "./pages/OrdersPage";
import { ProductPage } from "./pages/ProductPage";
import { SignUpPage } from "./pages/SignUpPage";

export function App() {
  return (
    <Routes>
      <Route element={<Layout />}>
        <Route index element={<CatalogPage />} />
        <Route path="products/:id" element={<ProductPage />} />
        <Route path="cart" element={<CartPage />} />
        <Route path="checkout" element={<CheckoutPage />} />
        <Route path="orders" element={<OrdersPage />} />
        <Route path="orders/:id" element={<OrderDetailPage />} />
        <Route path="login" element={<LoginPage />} />
        <Route path="signup" element={<SignUpPage />} />
        <Route path="notifications" element={<NotificationsPage />} />
        <Route path="admin" element={<AdminPage />} />
        <Route path="ops" element={<OpsPage />} />
        <Route path="*" element={<NotFoundPage />} />
      </Route>
    </Routes>
  );
}

function Layout() {
  const { cart } = useCart();
  const { info, session } = useSession();
  const auth = useClient(AuthService);
  const navigate = useNavigate();
  const location = useLocation();
  const mainRef = useRef<HTMLElement>(null);
  const count = cartCount(cart);

  // After a client-side navigation, move focus to the page so screen readers and keyboard
  // users start at the new content, as with a full page load.
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    mainRef.current?.focus();
  }, [location.pathname]);

  const logout = async () => {
    const refreshToken = session.currentRefreshToken;
    session.clear();
    navigate("/");
    if (refreshToken) {
      // Revoke server-side too; the local session is gone whatever the answer.
      await auth.logout({ refreshToken }).catch(() => undefined);
    }
  };

  return (
    <>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="site-header">
        <Link to="/" className="brand">
          Shopmesh
        </Link>
        <nav aria-label="Main" className="main-nav">
          <ul>
            <li>
              <NavLink to="/" end>
                Catalog
              </NavLink>
            </li>
            <li>
              <NavLink to="/cart">
                Cart <span className="cart-count">({count})</span>
                <span className="sr-only"> items</span>
              </NavLink>
            </li>
            {info && (
              <>
                <li>
                  <NavLink to="/orders">Orders</NavLink>
                </li>
                <li>
                  <NavLink to="/notifications">Notifications</NavLink>
                </li>
                {info.roles.includes("admin") && (
                  <li>
                    <NavLink to="/admin">Admin</NavLink>
                  </li>
                )}
              </>
            )}
            {info ? (
              <li>
                <button type="button" className="link-button nav-button" onClick={logout}>
                  Log out
                </button>
              </li>
            ) : (
              <>
                <li>
                  <NavLink to="/login">Log in</NavLink>
                </li>
                <li>
                  <NavLink to="/signup">Sign up</NavLink>
                </li>
              </>
            )}
          </ul>
        </nav>
        <CurrencySwitch />
        {info?.email && <p className="who">Signed in as {info.email}</p>}
      </header>
      <main id="main" ref={mainRef} tabIndex={-1}>
        <Outlet />
      </main>
      <footer className="site-footer">
        <p>
          Shopmesh demo shop · <Link to="/admin">Admin</Link> · <Link to="/ops">Ops</Link>
        </p>
      </footer>
    </>
  );
}
