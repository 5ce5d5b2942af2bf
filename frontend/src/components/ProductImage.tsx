import { useState } from "react";

/** A product picture, or a neutral placeholder (no network fetch) when there is none. */
export function ProductImage({ url, name, size = "card" }: { url?: string; name: string; size?: "card" | "large" | "thumb" }) {
  const [failed, setFailed] = useState(false);
  if (!url || failed) {
    return (
      <div className={`product-image placeholder ${size}`} aria-hidden="true">
        {name.slice(0, 1).toUpperCase()}
      </div>
    );
  }
  return <img className={`product-image ${size}`} src={url} alt="" loading="lazy" onError={() => setFailed(true)} />;
}
