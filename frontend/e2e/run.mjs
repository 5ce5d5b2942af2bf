#!/usr/bin/env node
/**
 * End-to-end run of the storefront against the real stack through NGINX (127.0.0.1:8080),
 * driving Debian's Chromium with playwright-core (no browser download, ever).
 *
 * Scenarios run in order and share one shopper; each names the services it needs. A
 * scenario is skipped (with the reason) when a service it needs is not up, or when a
 * scenario it builds on did not pass. Results: one JSON document on stdout (last line)
 * and in e2e/results.json; exit code 1 when any scenario failed, else 0.
 *
 *   node e2e/run.mjs                 # all services assumed up
 *   E2E_SERVICES=product node e2e/run.mjs   # only what product alone allows
 *   E2E_BASE_URL=http://127.0.0.1:8080 E2E_SMTP_URL=http://127.0.0.1:1080
 */
import { mkdtempSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = dirname(fileURLToPath(import.meta.url));
const BASE = process.env.E2E_BASE_URL ?? "http://127.0.0.1:8080";
const SMTP = process.env.E2E_SMTP_URL ?? "http://127.0.0.1:1080";
const CHROMIUM = process.env.SHOPMESH_CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = join(HERE, "screenshots");
const ALL = ["product", "user", "auth", "order", "notification", "cart", "currency", "shipping", "recommendation", "smtp-sink", "prometheus"];
const UP = new Set(process.env.E2E_SERVICES ? process.env.E2E_SERVICES.split(",").filter(Boolean) : ALL);
const ONLY = process.env.E2E_ONLY ? new Set(process.env.E2E_ONLY.split(",")) : null;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const T = 15_000;

const run = Date.now().toString(36);
const state = {
  shopper: { name: "Eve Tester", email: `e2e-${run}@example.com`, password: "correct horse battery" },
  other: { name: "Mallory Other", email: `e2e-${run}-other@example.com`, password: "another good password" },
  productName: "",
  productPath: "",
  orderId: "",
};
// The demo admin the user service seeds (services/user/demo.py).
const ADMIN = { email: "admin@shopmesh.local", password: "shopmesh-admin" };
const screenshots = [];

function check(cond, message) {
  if (!cond) throw new Error(message);
}

async function shot(page, name, viewport = DESKTOP, { reload = false } = {}) {
  if (viewport !== DESKTOP) await page.setViewportSize(viewport);
  if (reload) {
    // Load at this width, as a phone would (layout choices made at start apply).
    await page.reload({ waitUntil: "networkidle" });
  }
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  screenshots.push(`frontend/e2e/screenshots/${name}.png`);
  if (viewport !== DESKTOP) await page.setViewportSize(DESKTOP);
  if (reload) await page.reload({ waitUntil: "networkidle" });
}

async function goto(page, path) {
  await page.goto(BASE + path, { waitUntil: "domcontentloaded" });
}

/** Fails with the page's own alert text when one shows up instead of what we wait for. */
async function expectVisible(page, locator, what) {
  const alert = page.getByRole("alert").first();
  await Promise.race([
    locator.first().waitFor({ state: "visible", timeout: T }),
    alert.waitFor({ state: "visible", timeout: T }).then(async () => {
      throw new Error(`${what}: page shows an error instead: ${(await alert.innerText()).replace(/\s+/g, " ")}`);
    }),
  ]).catch(async (err) => {
    if (await locator.first().isVisible()) return;
    throw err;
  });
}

async function signUp(page, who) {
  await goto(page, "/signup");
  await page.getByLabel("Your name").fill(who.name);
  await page.getByLabel("Email").fill(who.email);
  await page.getByLabel("Password").fill(who.password);
  await page.getByRole("button", { name: "Sign up" }).click();
  await expectVisible(page, page.getByRole("button", { name: "Log out" }), `sign up ${who.email}`);
}

async function logIn(page, who) {
  await goto(page, "/login");
  await page.getByLabel("Email").fill(who.email);
  await page.getByLabel("Password").fill(who.password);
  await page.getByRole("button", { name: "Log in" }).click();
  await expectVisible(page, page.getByRole("button", { name: "Log out" }), `log in ${who.email}`);
}

async function prices(page) {
  const texts = await page.getByRole("list", { name: "Products" }).locator(".price").allInnerTexts();
  return texts.map((t) => Number(t.replace(/[^0-9.]/g, "")));
}

async function cartCount(page) {
  const text = await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: /^Cart/ }).innerText();
  return Number(/\((\d+)\)/.exec(text)?.[1] ?? NaN);
}

/** Presses Tab until the focused element matches, as a keyboard-only shopper would. */
async function tabTo(page, matches, what, max = 80) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press("Tab");
    const el = await page.evaluate(() => {
      const a = document.activeElement;
      return { tag: a?.tagName ?? "", text: (a?.textContent ?? "").trim(), label: a?.getAttribute("aria-label") ?? "" };
    });
    if (matches(el)) return i + 1;
  }
  throw new Error(`${max} presses of Tab never reached ${what}`);
}

function exactly(text) {
  return new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);
}

/** A new tab (own sessionStorage, so its own session) logged in as the demo admin. */
async function adminTab(context) {
  const page = await context.newPage();
  await logIn(page, ADMIN);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Admin" }).waitFor({ timeout: T });
  return page;
}

/** Admin page row of one product, by its SKU (names need not be unique, SKUs are). */
function adminRow(page, sku) {
  return page.getByRole("table").locator("tbody tr").filter({ has: page.locator('td[data-label="SKU"]', { hasText: exactly(sku) }) });
}

/** Opens the editor of the product with this SKU; returns the editor form. */
async function editProduct(page, sku) {
  const row = adminRow(page, sku);
  const name = await row.locator('td[data-label="Name"]').innerText();
  await row.getByRole("button", { name: `Edit ${name}` }).click();
  const editor = page.getByRole("form", { name: `Edit ${name}` });
  await editor.getByText(`SKU ${sku}`).waitFor({ timeout: T });
  return { editor, name };
}

/** Sets a product's stock through the admin editor; returns once the list shows it. */
async function setStock(page, sku, stock) {
  const { editor, name } = await editProduct(page, sku);
  await editor.getByRole("spinbutton", { name: "Stock" }).fill(String(stock));
  await editor.getByRole("button", { name: "Save" }).click();
  await expectVisible(page, editor.getByText(`Saved ${name}.`), `saving the stock of ${sku}`);
  await adminRow(page, sku).locator('td[data-label="Stock"]', { hasText: exactly(String(stock)) }).waitFor({ timeout: T });
  return editor;
}

/** The shopper's main pages ([name, path, locator that shows it is ready]) once the cart
 * scenario has chosen a product: what the phone-width and contrast checks walk. */
function shopperPages(page) {
  return [
    ["catalog", "/", page.getByRole("list", { name: "Products" })],
    ["product", state.productPath, page.getByRole("heading", { name: state.productName, level: 1 })],
    ["cart", "/cart", page.getByRole("list", { name: "Items in your cart" })],
    ["checkout", "/checkout", page.getByLabel("Postal code")],
  ];
}

const scenarios = [
  {
    name: "shell",
    needs: [],
    about: "the app loads from NGINX with landmarks and a keyboard skip link; the ops page asks a signed-out visitor to log in",
    async run({ page }) {
      await goto(page, "/");
      await page.getByRole("banner").waitFor({ timeout: T });
      check(await page.getByRole("main").count() === 1, "no <main> landmark");
      check(await page.getByRole("navigation", { name: "Main" }).count() === 1, "no main navigation");
      await page.keyboard.press("Tab");
      check((await page.evaluate(() => document.activeElement?.textContent)) === "Skip to content", "first Tab does not reach the skip link");
      await goto(page, "/ops");
      await page.getByRole("heading", { name: "Operations" }).waitFor({ timeout: T });
      await page.getByText("Please log in to see live metrics.").waitFor({ timeout: T });
      await shot(page, "ops-signed-out");
      await goto(page, "/no-such-page");
      await page.getByRole("heading", { name: "Page not found" }).waitFor({ timeout: T });
    },
  },
  {
    name: "browse",
    needs: ["product"],
    about: "catalog lists products; category, price filter and paging work",
    async run({ page }) {
      await goto(page, "/");
      const grid = page.getByRole("list", { name: "Products" });
      await expectVisible(page, grid, "catalog");
      check((await grid.getByRole("listitem").count()) > 0, "catalog is empty");
      await shot(page, "catalog");
      const categories = page.getByRole("navigation", { name: "Categories" }).getByRole("button");
      await categories.nth(1).waitFor({ timeout: T });
      const slug = (await categories.nth(1).innerText()).split(" ")[0];
      await categories.nth(1).click();
      await page.getByRole("heading", { name: `Category: ${slug}` }).waitFor({ timeout: T });
      await expectVisible(page, grid, "category listing");
      const cats = await grid.locator(".meta").allInnerTexts();
      check(cats.length > 0 && cats.every((c) => c === slug), `category filter leaked: ${cats.join(",")}`);
      // A range around a price this category really has (test data adds categories whose
      // products all cost the same), so the filtered list must be non-empty.
      const listed = (await prices(page)).sort((a, b) => a - b);
      const mid = listed[Math.floor(listed.length / 2)];
      const [lo, hi] = [Math.floor(mid), Math.ceil(mid) + 1];
      await page.getByLabel("Min").fill(String(lo));
      await page.getByLabel("Max").fill(String(hi));
      await page.getByRole("button", { name: "Apply" }).click();
      await page.waitForURL(new RegExp(`min=${lo}`), { timeout: T });
      await page.waitForTimeout(300);
      await expectVisible(page, grid, "price filter");
      const ps = await prices(page);
      check(ps.length > 0 && ps.every((p) => p >= lo && p <= hi), `price filter ${lo}-${hi} leaked: ${ps.join(",")}`);
      await goto(page, "/");
      await expectVisible(page, grid, "catalog");
      const next = page.getByRole("button", { name: "Next →" });
      if (await next.isEnabled()) {
        // By product link (id): test data holds many products with the same name and price.
        const ids = () => grid.getByRole("heading").getByRole("link").evaluateAll((as) => as.map((a) => a.getAttribute("href")));
        const first = await ids();
        await next.click();
        await page.getByText("Page 2").waitFor({ timeout: T });
        await expectVisible(page, grid, "page 2");
        await page.waitForFunction((href) => !document.querySelector(`a[href="${href}"]`), first[0], { timeout: T }).catch(() => undefined);
        const again = (await ids()).filter((id) => first.includes(id));
        check(again.length === 0, `page 2 shows products of page 1 again: ${again.join(", ")}`);
      }
    },
  },
  {
    name: "search",
    needs: ["product"],
    about: "full-text search finds products by name",
    async run({ page }) {
      await goto(page, "/");
      await page.getByLabel("Search products").fill("mug");
      await page.getByLabel("Search products").press("Enter");
      await page.getByRole("heading", { name: "Results for “mug”" }).waitFor({ timeout: T });
      const grid = page.getByRole("list", { name: "Products" });
      await expectVisible(page, grid, "search results");
      const names = await grid.getByRole("heading").allInnerTexts();
      check(names.some((n) => /mug/i.test(n)), `no mug in results: ${names.join(", ")}`);
      state.productName = names.find((n) => /mug/i.test(n));
      await shot(page, "search");
    },
  },
  {
    name: "cart",
    needs: ["product"],
    after: ["search"],
    about: "product page, add to cart, cart survives a reload",
    async run({ page }) {
      await page.getByRole("link", { name: state.productName }).click();
      await page.getByRole("heading", { name: state.productName, level: 1 }).waitFor({ timeout: T });
      state.productPath = new URL(page.url()).pathname;
      await shot(page, "product");
      await page.getByLabel("Quantity").fill("2");
      await page.getByRole("button", { name: "Add to cart" }).click();
      await page.getByText(`Added 2 × ${state.productName}`).waitFor({ timeout: T });
      await goto(page, "/cart");
      await page.reload();
      const line = page.getByRole("list", { name: "Items in your cart" }).getByRole("listitem");
      await line.first().waitFor({ timeout: T });
      check((await line.count()) === 1, "cart should have one line");
      check((await line.first().getByRole("spinbutton").inputValue()) === "2", "quantity not kept across reload");
      await shot(page, "cart");
    },
  },
  {
    name: "currency",
    needs: ["product", "currency"],
    after: ["cart"],
    about: "the header's currency switch shows every price in euros (converted by the currency service) and survives a reload",
    async run({ page }) {
      await goto(page, "/");
      const grid = page.getByRole("list", { name: "Products" });
      await expectVisible(page, grid, "catalog");
      await page.getByLabel("Currency").selectOption("EUR");
      await page.waitForFunction(
        () => {
          const ps = [...document.querySelectorAll("[aria-label=Products] .price")].map((e) => e.textContent ?? "");
          return ps.length > 0 && ps.every((t) => t.includes("€"));
        },
        null,
        { timeout: T },
      );
      await shot(page, "catalog-eur");
      await goto(page, "/");
      await expectVisible(page, grid, "catalog after reload");
      check((await page.getByLabel("Currency").inputValue()) === "EUR", "the chosen currency was lost on reload");
      await grid.locator(".price", { hasText: "€" }).first().waitFor({ timeout: T });
    },
  },
  {
    name: "signup",
    needs: ["user", "auth"],
    about: "a new shopper signs up and is logged in",
    async run({ page }) {
      await goto(page, "/signup");
      await shot(page, "signup");
      await signUp(page, state.shopper);
      await page.getByText(`Signed in as ${state.shopper.email}`).waitFor({ timeout: T });
    },
  },
  {
    name: "recommendations",
    needs: ["product", "recommendation"],
    after: ["cart"],
    about: "a product page suggests other products (also bought, or the same category), linked and priced",
    async run({ page }) {
      await goto(page, state.productPath);
      const section = page.getByRole("region", { name: /Customers also bought|More like this/ });
      await expectVisible(page, section, "recommendations");
      const links = section.getByRole("link");
      check((await links.count()) > 0, "no recommended product");
      const hrefs = await links.evaluateAll((as) => as.map((a) => a.getAttribute("href")));
      check(!hrefs.includes(state.productPath), "a product recommends itself");
      await shot(page, "recommendations");
      await links.first().click();
      await page.getByRole("heading", { level: 1 }).waitFor({ timeout: T });
      check(new URL(page.url()).pathname === hrefs[0], "the recommendation link did not open its product");
    },
  },
  {
    name: "logout-login",
    needs: ["user", "auth"],
    after: ["signup"],
    about: "log out, then log in again with the same password; a wrong password is refused in words",
    async run({ page }) {
      await page.getByRole("button", { name: "Log out" }).click();
      await page.getByRole("link", { name: "Log in" }).first().waitFor({ timeout: T });
      check(!(await page.evaluate(() => sessionStorage.getItem("shopmesh.session"))), "refresh token left in sessionStorage after logout");
      await goto(page, "/login");
      await page.getByLabel("Email").fill(state.shopper.email);
      await page.getByLabel("Password").fill("wrong password!");
      await page.getByRole("button", { name: "Log in" }).click();
      const alert = page.getByRole("alert");
      await alert.waitFor({ timeout: T });
      await shot(page, "login-error");
      await logIn(page, state.shopper);
      // Reload: the access token is gone (memory only), the refresh token brings it back.
      await page.reload();
      await page.getByRole("button", { name: "Log out" }).waitFor({ timeout: T });
    },
  },
  {
    name: "server-cart",
    needs: ["product", "user", "auth", "cart"],
    after: ["cart", "logout-login"],
    about: "signed in, the cart is the server's: the browser cart was merged on sign-in, an add survives a reload and shows in another tab's session; the product picture loads at its set size with cache headers",
    async run({ page, context }) {
      await goto(page, state.productPath);
      await page.getByRole("heading", { name: state.productName, level: 1 }).waitFor({ timeout: T });
      const img = page.locator("img.product-image.large");
      await img.waitFor({ timeout: T });
      await page.waitForFunction(() => document.querySelector("img.product-image.large")?.complete, null, { timeout: T });
      const pic = await img.evaluate((el) => ({
        src: el.getAttribute("src"),
        width: el.getAttribute("width"),
        height: el.getAttribute("height"),
        natural: [el.naturalWidth, el.naturalHeight],
        box: [el.getBoundingClientRect().width, el.getBoundingClientRect().height],
      }));
      check(/^\/images\/products\/p-\d{4}\.svg$/.test(pic.src ?? ""), `picture not the project's own: ${pic.src}`);
      check(pic.width === "480" && pic.height === "360", `picture without its size: ${pic.width}x${pic.height}`);
      check(pic.natural[0] === 480 && pic.natural[1] === 360, `picture did not load: natural ${pic.natural.join("x")}`);
      check(Math.abs(pic.box[0] / pic.box[1] - 4 / 3) < 0.02, `picture box not 4:3: ${pic.box.join("x")}`);
      const res = await page.request.get(BASE + pic.src);
      const headers = res.headers();
      check(res.status() === 200 && headers["content-type"]?.startsWith("image/svg+xml"), `picture: HTTP ${res.status()} ${headers["content-type"]}`);
      check(/max-age=\d+/.test(headers["cache-control"] ?? "") && Boolean(headers.etag), `picture cache headers: ${headers["cache-control"]} / ${headers.etag}`);
      const again = await page.request.get(BASE + pic.src, { headers: { "if-none-match": headers.etag } });
      check(again.status() === 304, `If-None-Match answered ${again.status()}, not 304`);
      // The list page: every demo product of a category shows its own picture, at its size.
      await goto(page, "/?category=kitchen");
      const grid = page.getByRole("list", { name: "Products" });
      await expectVisible(page, grid, "kitchen listing");
      await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight)); // lazy pictures
      await page.waitForFunction(
        () => [...document.querySelectorAll("ul img.product-image")].every((i) => i.complete),
        null,
        { timeout: T },
      );
      const cards = await grid.locator("img.product-image").evaluateAll((imgs) =>
        imgs.map((i) => [i.getAttribute("src"), i.getAttribute("width"), i.getAttribute("height"), i.naturalWidth]),
      );
      check(cards.length >= 10, `kitchen shows ${cards.length} pictures, expected its 10 demo products'`);
      const bad = cards.filter(([src, w, h, n]) => !/^\/images\/products\/p-\d{4}\.svg$/.test(src ?? "") || w !== "480" || h !== "360" || n !== 480);
      check(bad.length === 0, `list pictures not loaded at their size: ${JSON.stringify(bad.slice(0, 3))}`);
      await goto(page, state.productPath);
      await page.getByRole("heading", { name: state.productName, level: 1 }).waitFor({ timeout: T });

      // The signed-out cart (2 units, scenario "cart") was merged on sign-up; add one more.
      await page.getByLabel("Quantity").fill("1");
      // The page shows the add at once; the full page load below must not cut its call short.
      const stored = page.waitForResponse((r) => r.url().endsWith("/shop.cart.v1.CartService/AddItem"), { timeout: T });
      await page.getByRole("button", { name: "Add to cart" }).click();
      await page.getByText(`Added 1 × ${state.productName}`).waitFor({ timeout: T });
      check((await stored).ok(), "AddItem failed");
      const quantity = async (p) => {
        const line = p.getByRole("list", { name: "Items in your cart" }).getByRole("listitem");
        await line.first().waitFor({ timeout: T });
        check((await line.count()) === 1, `cart should have one line, has ${await line.count()}`);
        const input = line.first().getByRole("spinbutton");
        await p.waitForFunction((el) => el.value === "3", await input.elementHandle(), { timeout: T }).catch(() => undefined);
        return input.inputValue();
      };
      await goto(page, "/cart");
      await page.reload();
      check((await quantity(page)) === "3", "the server cart did not keep 2 merged + 1 added across a reload");
      const browserCart = await page.evaluate(() => localStorage.getItem("shopmesh.cart.v1"));
      check(!browserCart || browserCart === "[]", `the browser still keeps a cart: ${browserCart}`);
      // Another session (a new tab has its own sessionStorage): the same cart, from the server.
      const other = await context.newPage();
      try {
        await logIn(other, state.shopper);
        await goto(other, "/cart");
        check((await quantity(other)) === "3", "another session of the shopper does not see the cart");
      } finally {
        await other.close();
      }
      await shot(page, "cart-server");
    },
  },
  {
    name: "phone-width",
    needs: ["product", "user", "auth"],
    after: ["cart", "logout-login"],
    about: "at 390 px wide, catalog, product, cart and checkout fit the screen (no sideways scroll)",
    async run({ page }) {
      const pages = shopperPages(page);
      const wide = [];
      await page.setViewportSize(PHONE);
      try {
        for (const [name, path, ready] of pages) {
          // Loaded at this width, as on a phone (layout choices made at start apply).
          await page.goto(BASE + path, { waitUntil: "networkidle" });
          await expectVisible(page, ready, `${name} at ${PHONE.width} px`);
          const { scrollWidth, innerWidth } = await page.evaluate(() => ({
            scrollWidth: document.documentElement.scrollWidth,
            innerWidth: window.innerWidth,
          }));
          await shot(page, `${name}-phone`);
          if (scrollWidth > innerWidth) wide.push(`${name}: scrollWidth ${scrollWidth} > innerWidth ${innerWidth}`);
        }
      } finally {
        await page.setViewportSize(DESKTOP);
      }
      check(wide.length === 0, `scrolls sideways at ${PHONE.width} px: ${wide.join("; ")}`);
    },
  },
  {
    name: "contrast",
    needs: ["product", "user", "auth"],
    after: ["cart", "logout-login"],
    about: "every visible text on catalog, product, cart and checkout meets WCAG AA contrast against its real background",
    async run({ page }) {
      const pages = shopperPages(page);
      const failures = [];
      let checked = 0;
      for (const [name, path, ready] of pages) {
        await goto(page, path);
        await expectVisible(page, ready, name);
        // WCAG 2 relative luminance and contrast ratio; the background is the first opaque
        // one up the ancestors (translucent ones blended over it), white at the root.
        const found = await page.evaluate(() => {
          const rgba = (c) => (c.match(/[\d.]+/g) || []).map(Number).concat([1]).slice(0, 4);
          const lum = ([r, g, b]) => {
            const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
            return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
          };
          const over = (top, under) => top.slice(0, 3).map((v, i) => v * top[3] + under[i] * (1 - top[3])).concat([1]);
          const background = (el) => {
            const layers = [];
            for (let e = el; e; e = e.parentElement) {
              const c = rgba(getComputedStyle(e).backgroundColor);
              if (c[3] > 0) layers.push(c);
              if (c[3] >= 1) break;
            }
            return layers.reverse().reduce((under, top) => over(top, under), [255, 255, 255, 1]);
          };
          const out = { checked: 0, bad: [] };
          for (const el of document.querySelectorAll("body *")) {
            const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
            if (!own || el.closest("[disabled],[aria-hidden='true']")) continue;
            const r = el.getBoundingClientRect();
            const st = getComputedStyle(el);
            if (!r.width || !r.height || st.visibility === "hidden" || Number(st.opacity) === 0) continue;
            const bg = background(el);
            const fg = over(rgba(st.color), bg);
            const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
            const ratio = (a + 0.05) / (b + 0.05);
            const size = parseFloat(st.fontSize);
            const large = size >= 24 || (size >= 18.66 && Number(st.fontWeight) >= 700);
            out.checked++;
            if (ratio < (large ? 3 : 4.5)) out.bad.push(`${el.tagName.toLowerCase()} "${el.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}:1`);
          }
          return out;
        });
        checked += found.checked;
        failures.push(...found.bad.map((b) => `${name}: ${b}`));
      }
      check(checked > 40, `only ${checked} text elements checked`);
      check(failures.length === 0, `low contrast: ${failures.slice(0, 10).join("; ")}`);
    },
  },
  {
    name: "quote",
    needs: ["product", "user", "auth", "shipping", "currency"],
    after: ["cart", "logout-login", "currency"],
    about: "checkout shows a shipping quote for the destination country in the chosen currency",
    async run({ page }) {
      await goto(page, "/checkout");
      const line = page.locator(".shipping-quote");
      await page.getByText(/Shipping to US: €/).waitFor({ timeout: T });
      await page.getByLabel(/Country code/).fill("DE");
      await page.getByText(/Shipping to DE: €/).waitFor({ timeout: T });
      check(/valid until/.test(await line.innerText()), "the quote does not say until when it is valid");
      await shot(page, "checkout-quote");
    },
  },
  {
    name: "checkout",
    needs: ["product", "user", "auth", "order"],
    after: ["cart", "logout-login"],
    about: "checkout with a double click places exactly one order",
    async run({ page }) {
      await goto(page, "/checkout");
      await page.getByLabel("Full name").fill(state.shopper.name);
      await page.getByLabel("Street and number").fill("1 Test Street");
      await page.getByLabel("City").fill("Springfield");
      await page.getByLabel("Postal code").fill("12345");
      await shot(page, "checkout");
      await page.getByRole("button", { name: "Place order" }).dblclick();
      await page.waitForURL(/\/orders\/[^/?]+\?placed=1/, { timeout: 30_000 }).catch(async (err) => {
        const alert = page.getByRole("alert");
        if (await alert.count()) throw new Error(`checkout failed: ${(await alert.first().innerText()).replace(/\s+/g, " ")}`);
        throw err;
      });
      state.orderId = decodeURIComponent(new URL(page.url()).pathname.split("/").pop());
      await page.getByRole("heading", { name: `Order ${state.orderId}` }).waitFor({ timeout: T });
      await goto(page, "/orders");
      const rows = page.getByRole("table").locator("tbody tr");
      await rows.first().waitFor({ timeout: T });
      check((await rows.count()) === 1, `double click placed ${await rows.count()} orders`);
      await shot(page, "orders");
      await goto(page, "/cart");
      await page.getByText("Your cart is empty.").waitFor({ timeout: T });
    },
  },
  {
    name: "order-confirmed",
    needs: ["product", "user", "auth", "order"],
    after: ["checkout"],
    about: "the open order page updates live to Confirmed",
    async run({ page }) {
      await goto(page, `/orders/${encodeURIComponent(state.orderId)}`);
      const status = page.getByTestId("order-status");
      await status.waitFor({ timeout: T });
      await page.waitForFunction(
        () => ["Confirmed", "Paid", "Shipped", "Delivered"].includes(document.querySelector("[data-testid=order-status]")?.textContent ?? ""),
        null,
        { timeout: 45_000 },
      );
      await shot(page, "order-detail");
      await shot(page, "order-detail-phone", PHONE);
    },
  },
  {
    name: "order-currency",
    needs: ["product", "user", "auth", "order", "currency", "shipping"],
    after: ["order-confirmed", "quote"],
    about: "the placed order keeps the euros and the quoted shipping it was placed with",
    async run({ page }) {
      await goto(page, `/orders/${encodeURIComponent(state.orderId)}`);
      const total = page.locator(".order-total");
      await total.waitFor({ timeout: T });
      check((await total.innerText()).includes("€"), `order total not in euros: ${await total.innerText()}`);
      await page.getByRole("rowheader", { name: "Shipping (quoted)" }).waitFor({ timeout: T });
      await page.getByLabel("Currency").selectOption("USD"); // an order's amounts do not follow the switch
      await page.waitForTimeout(300);
      check((await total.innerText()).includes("€"), "the order's total was converted again");
    },
  },
  {
    name: "email",
    needs: ["product", "user", "auth", "order", "notification", "smtp-sink"],
    after: ["order-confirmed"],
    about: "the confirmation email reached the SMTP sink, and the notifications page lists it",
    async run({ page }) {
      const deadline = Date.now() + 60_000;
      let found;
      while (!found && Date.now() < deadline) {
        const res = await fetch(`${SMTP}/messages?to=${encodeURIComponent(state.shopper.email)}`);
        const messages = res.ok ? await res.json() : [];
        found = messages.find((m) => m.subject.includes(state.orderId) && /confirmed/i.test(m.subject));
        if (!found) await new Promise((r) => setTimeout(r, 1000));
      }
      check(found, `no confirmation email for order ${state.orderId} to ${state.shopper.email} in the SMTP sink`);
      await goto(page, "/notifications");
      await expectVisible(page, page.getByText(found.subject), "notifications page");
      await shot(page, "notifications");
    },
  },
  {
    name: "other-user-refused",
    needs: ["user", "auth", "order"],
    after: ["checkout"],
    about: "another shopper opening the first shopper's order is refused",
    async run({ context }) {
      // A new tab has its own sessionStorage: a separate session in the same browser.
      const page = await context.newPage();
      try {
        await signUp(page, state.other);
        await goto(page, `/orders/${encodeURIComponent(state.orderId)}`);
        const alert = page.getByRole("alert");
        await alert.waitFor({ timeout: T });
        const text = await alert.innerText();
        check(/Not found|Not allowed/.test(text), `unexpected refusal text: ${text}`);
        check((await page.getByTestId("order-status").count()) === 0, "other user's order status is visible");
        await shot(page, "order-refused");
      } finally {
        await page.close();
      }
    },
  },
  {
    name: "keyboard",
    needs: ["product"],
    about: "keyboard only (Tab/Enter): catalog -> product page -> add to cart -> cart",
    async run({ page }) {
      await goto(page, "/");
      const grid = page.getByRole("list", { name: "Products" });
      await expectVisible(page, grid, "catalog");
      let target = "";
      for (const card of await grid.getByRole("listitem").all()) {
        if (await card.getByRole("button").isEnabled()) {
          target = await card.getByRole("heading").innerText();
          break;
        }
      }
      check(target, "no product in stock on the first catalog page");
      const before = await cartCount(page);
      await tabTo(page, (el) => el.tag === "A" && el.text === target, `the link to ${target}`);
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { name: target, level: 1 }).waitFor({ timeout: T });
      await tabTo(page, (el) => el.tag === "BUTTON" && el.text === "Add to cart", "Add to cart");
      await page.keyboard.press("Enter");
      await page.getByText(`Added 1 × ${target}`).waitFor({ timeout: T });
      check((await cartCount(page)) === before + 1, `cart count ${await cartCount(page)}, expected ${before + 1}`);
      await tabTo(page, (el) => el.tag === "A" && el.text === "View cart", "View cart");
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { name: "Your cart" }).waitFor({ timeout: T });
      await page.getByRole("list", { name: "Items in your cart" }).getByRole("listitem").filter({ hasText: target }).first().waitFor({ timeout: T });
      await shot(page, "cart-keyboard");
      // Leave the cart as it was for the scenarios after this one (mouse is fine here).
      await page.getByRole("button", { name: `Remove ${target}` }).click();
    },
  },
  {
    name: "admin",
    needs: ["product", "user", "auth"],
    after: ["logout-login"],
    about: "the signed-in shopper (no admin) sees the admin list, an edit is refused in words, and the ops page says only admins",
    async run({ page }) {
      await goto(page, "/admin");
      const table = page.getByRole("table");
      const login = page.getByText("Please log in to manage products.");
      await table.or(login).first().waitFor({ timeout: T });
      // A log-in prompt means the refusal below was never exercised: that is a failure.
      check(!(await login.isVisible()), "admin page asks to log in: the shopper's session is gone, the refusal was not reached");
      await expectVisible(page, table, "admin list");
      await page.getByRole("button", { name: /^Edit / }).first().click();
      const stock = page.getByRole("spinbutton", { name: "Stock" });
      await stock.waitFor({ timeout: T });
      // The e2e shopper is no admin: the gateway/service must refuse the edit, in words.
      await stock.fill(String(Number(await stock.inputValue()) + 1));
      await page.getByRole("button", { name: "Save" }).click();
      const alert = page.getByRole("alert");
      await alert.waitFor({ timeout: T });
      const text = await alert.innerText();
      check(/Not allowed/.test(text), `non-admin edit not refused in words: ${text}`);
      await shot(page, "admin-refused");
      if (UP.has("prometheus")) {
        await page.getByRole("link", { name: "Ops" }).click();
        const refused = page.getByRole("alert");
        await refused.waitFor({ timeout: T });
        const words = await refused.innerText();
        check(/Only admins can see this/.test(words), `ops page for a shopper: ${words}`);
        await shot(page, "ops-refused");
      }
    },
  },
  {
    name: "admin-edit",
    needs: ["product", "user", "auth"],
    about: "the demo admin changes a product's stock on the admin page, the product page shows it, and it is put back",
    async run({ context }) {
      const page = await adminTab(context);
      let delta = 7;
      let sku = "";
      let changed = false;
      try {
        // Client-side navigation keeps the access token and the read-your-writes LSN.
        await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Admin" }).click();
        await expectVisible(page, page.getByRole("table"), "admin list");
        const row = page.getByRole("table").locator("tbody tr").first();
        sku = await row.locator('td[data-label="SKU"]').innerText();
        const before = Number(await row.locator('td[data-label="Stock"]').innerText());
        check(sku && Number.isInteger(before), `admin row without SKU or stock: ${await row.innerText()}`);
        if (before + delta > 1_000_000) delta = -delta; // the editor's maximum
        const editor = await setStock(page, sku, before + delta);
        changed = true;
        await shot(page, "admin");
        // The shopper's view of the same product (by id, from the editor's link).
        await editor.getByRole("link", { name: "View in the shop" }).click();
        await page.getByText(`SKU ${sku}`).waitFor({ timeout: T });
        await expectVisible(page, page.getByText(`${before + delta} in stock`, { exact: true }), `product page of ${sku} after the edit`);
        await shot(page, "product-after-admin-edit");
      } finally {
        if (changed) {
          // Put it back relative to what it is now: an order placed meanwhile keeps its units.
          await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Admin" }).click();
          await expectVisible(page, adminRow(page, sku), "admin list");
          const now = Number(await adminRow(page, sku).locator('td[data-label="Stock"]').innerText());
          await setStock(page, sku, Math.max(0, now - delta));
        }
        await page.close();
      }
    },
  },
  {
    name: "ops-admin",
    needs: ["user", "auth", "prometheus"],
    about: "the demo admin sees live RED per service, consumer lag, DLQ size and replica lag with charts on the ops page",
    async run({ context }) {
      const page = await adminTab(context);
      try {
        await page.getByRole("link", { name: "Ops" }).click();
        const red = page.getByRole("region", { name: "Requests per service" });
        await expectVisible(page, red, "ops page as admin");
        check((await red.locator("tbody tr").count()) > 0, "no service reports requests");
        for (const region of ["Kafka consumer lag", "Dead-letter queues", "Replica lag"]) {
          check((await page.getByRole("region", { name: region }).count()) === 1, `no ${region} section`);
        }
        const drawn = await red.locator("svg.sparkline path").count();
        check(drawn > 0, "no request-rate chart has data");
        await shot(page, "ops-admin");
      } finally {
        await page.close();
      }
    },
  },
];

async function main() {
  mkdirSync(SHOTS, { recursive: true });
  // Failure shots of an earlier run would read as failures of this one.
  for (const f of readdirSync(SHOTS)) if (f.startsWith("FAILED-")) rmSync(join(SHOTS, f));
  const profile = mkdtempSync(join(tmpdir(), "shopmesh-e2e-"));
  const results = [];
  const started = Date.now();
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: DESKTOP,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    const consoleErrors = [];
    // Every tab (scenarios open their own for a second session) reports uncaught errors.
    context.on("page", (p) => p.on("pageerror", (err) => consoleErrors.push(String(err))));
    const first = context.pages()[0];
    const page = first ?? (await context.newPage());
    if (first) first.on("pageerror", (err) => consoleErrors.push(String(err)));
    const passed = new Set();
    for (const s of scenarios) {
      if (ONLY && !ONLY.has(s.name)) continue;
      const missing = s.needs.filter((n) => !UP.has(n));
      const notPassed = (s.after ?? []).filter((n) => !passed.has(n));
      if (missing.length || notPassed.length) {
        const reason = missing.length ? `services not up: ${missing.join(", ")}` : `needs passing: ${notPassed.join(", ")}`;
        results.push({ name: s.name, status: "skipped", reason, about: s.about });
        continue;
      }
      const t0 = Date.now();
      try {
        await s.run({ page, context });
        check(consoleErrors.length === 0, `uncaught page errors: ${consoleErrors.join(" | ")}`);
        passed.add(s.name);
        results.push({ name: s.name, status: "passed", ms: Date.now() - t0, about: s.about });
      } catch (err) {
        const path = join(SHOTS, `FAILED-${s.name}.png`);
        await page.screenshot({ path, fullPage: true }).catch(() => undefined);
        results.push({ name: s.name, status: "failed", ms: Date.now() - t0, error: String(err?.message ?? err).slice(0, 2000), about: s.about, screenshot: path });
      }
      consoleErrors.length = 0;
    }
  } finally {
    await context?.close().catch(() => undefined);
    rmSync(profile, { recursive: true, force: true });
  }
  const report = { base_url: BASE, services: [...UP], ms: Date.now() - started, results, screenshots };
  writeFileSync(join(HERE, "results.json"), JSON.stringify(report, null, 2));
  for (const r of results) process.stderr.write(`${r.status.padEnd(8)} ${r.name}${r.error ? `: ${r.error}` : r.reason ? ` (${r.reason})` : ""}\n`);
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exitCode = results.some((r) => r.status === "failed") ? 1 : 0;
}

main().catch((err) => {
  process.stderr.write(`e2e runner crashed: ${err?.stack ?? err}\n`);
  process.stdout.write(`${JSON.stringify({ crashed: String(err?.message ?? err), results: [] })}\n`);
  process.exitCode = 2;
});
