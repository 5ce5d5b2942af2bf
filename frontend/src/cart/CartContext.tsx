import { createContext, type ReactNode, useContext, useSyncExternalStore } from "react";
import type { Cart } from "./cart";
import type { CartApi } from "./shop-cart";

const CartContext = createContext<CartApi | null>(null);

export function CartProvider({ store, children }: { store: CartApi; children: ReactNode }) {
  return <CartContext.Provider value={store}>{children}</CartContext.Provider>;
}

/** The cart lines (re-render on change) and the store to change them. */
export function useCart(): { cart: Cart; store: CartApi } {
  const store = useContext(CartContext);
  if (!store) throw new Error("useCart must be used inside <CartProvider>");
  const cart = useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
  return { cart, store };
}
