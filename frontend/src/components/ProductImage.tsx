import { useState } from "react";

/** Intrinsic size of each use: set on the <img> so the browser reserves the box before the
 * picture arrives and the layout does not jump (the demo pictures are 480 x 360 SVGs). */
const SIZES = { card: [480, 360], large: [480, 360], thumb: [64, 64] } as const;

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
  const [width, height] = SIZES[size];
  return (
    <img
      className={`product-image ${size}`}
      src={url}
      alt=""
      width={width}
      height={height}
      loading="lazy"
      decoding="async"
      onError={() => setFailed(true)}
    />
  );
}
