/**
 * Turns any error from a generated client into words a shopper understands.
 *
 * Connect codes are the contract (services map domain errors to them, see
 * services/runtime/errors.py); the raw server message is shown only for INVALID_ARGUMENT,
 * where it names the field that needs fixing. Everything else gets a fixed sentence so a
 * stack trace or internal detail never reaches the page.
 */
import { Code, ConnectError } from "@connectrpc/connect";

export type ErrorAction = "login" | "retry" | "wait" | "none";

export interface FriendlyError {
  code: Code;
  /** Short heading, e.g. "Please check your input". */
  title: string;
  /** One or two sentences for the shopper. */
  message: string;
  /** The field the server complained about, when it named one (INVALID_ARGUMENT). */
  field?: string;
  /** What the UI should offer next. */
  action: ErrorAction;
}

// services/runtime/errors.py phrases violations as "field: message", several joined by
// "; ". Keep the human part and name the first field so a form can focus it.
const FIELD_MESSAGE = /^([A-Za-z_][\w.[\]"']*):\s*(.+)$/;

function fieldViolations(rawMessage: string): { field?: string; message: string } {
  let field: string | undefined;
  const parts = rawMessage.split(/;\s*/).map((part) => {
    const m = FIELD_MESSAGE.exec(part.trim());
    if (!m) return part.trim();
    const name = m[1].replace(/\[[^\]]*\]/g, "");
    field ??= name;
    return `${humanField(name)}: ${m[2].trim()}`;
  });
  return { field, message: parts.filter(Boolean).join(". ") };
}

/** "shipping_address.postal_code" -> "Postal code". */
export function humanField(field: string): string {
  const last = field.split(".").pop() ?? field;
  const words = last.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export function describeError(err: unknown): FriendlyError {
  const e = ConnectError.from(err);
  switch (e.code) {
    case Code.InvalidArgument: {
      const { field, message } = fieldViolations(e.rawMessage);
      return {
        code: e.code,
        title: "Please check your input",
        message: message || "Some of the details you entered are not valid.",
        field,
        action: "none",
      };
    }
    case Code.NotFound:
      return {
        code: e.code,
        title: "Not found",
        message: "We couldn't find what you were looking for. It may have been removed.",
        action: "none",
      };
    case Code.Unauthenticated:
      return {
        code: e.code,
        title: "Please log in",
        message: "You need to log in (again) to do this.",
        action: "login",
      };
    case Code.PermissionDenied:
      return {
        code: e.code,
        title: "Not allowed",
        message: "Your account isn't allowed to see or change this.",
        action: "none",
      };
    case Code.ResourceExhausted:
      return {
        code: e.code,
        title: "Slow down a little",
        message: "You're going a bit fast. Please wait a few seconds and try again.",
        action: "wait",
      };
    case Code.AlreadyExists:
      return {
        code: e.code,
        title: "Already exists",
        message: e.rawMessage || "Something with these details already exists.",
        action: "none",
      };
    case Code.FailedPrecondition:
    case Code.Aborted:
      return {
        code: e.code,
        title: "Can't do that right now",
        message: e.rawMessage || "This can't be done in the current state.",
        action: "none",
      };
    case Code.Unavailable:
    case Code.DeadlineExceeded:
      return {
        code: e.code,
        title: "Service unavailable",
        message: "We couldn't reach the shop just now. Please try again in a moment.",
        action: "retry",
      };
    case Code.Canceled:
      return {
        code: e.code,
        title: "Cancelled",
        message: "The request was cancelled.",
        action: "retry",
      };
    default:
      return {
        code: e.code,
        title: "Something went wrong",
        message: "Something went wrong on our side. Please try again.",
        action: "retry",
      };
  }
}
