/**
 * "Customers also bought" on a product page (the recommendation service), or more of the
 * product's category while it has no co-purchases. A recommendation service that cannot
 * answer hides the section: the product page itself never fails for it.
 */
import { ProductService, type Product } from "@gen/shop/product/v1/product_pb.js";
import {
  RecommendationService,
  RecommendationSource,
} from "@gen/shop/recommendation/v1/recommendation_pb.js";
import { Link } from "react-router";
import { useClient } from "../api/use-client";
import { useQuery } from "../api/use-query";
import { Price } from "./Price";
import { ProductImage } from "./ProductImage";

const LIMIT = 4;

export function Recommendations({ productId }: { productId: string }) {
  const recommendations = useClient(RecommendationService);
  const products = useClient(ProductService);
  const query = useQuery(
    async (signal) => {
      const reply = await recommendations.listRecommendations({ productId, limit: LIMIT }, { signal });
      const found = await Promise.all(
        reply.recommendations.map((r) =>
          products
            .getProduct({ id: r.productId }, { signal })
            .then((p) => p.product)
            .catch(() => undefined), // a product gone since: skip it
        ),
      );
      return { source: reply.source, products: found.filter((p): p is Product => !!p) };
    },
    [recommendations, products, productId],
  );
  if (query.status !== "success" || query.data.products.length === 0) return null;
  const title =
    query.data.source === RecommendationSource.ALSO_BOUGHT ? "Customers also bought" : "More like this";
  return (
    <section aria-labelledby="recommendations-heading" className="recommendations">
      <h2 id="recommendations-heading">{title}</h2>
      <ul className="recommendation-list">
        {query.data.products.map((p) => (
          <li key={p.id}>
            <Link to={`/products/${encodeURIComponent(p.id)}`}>
              <ProductImage url={p.imageUrls[0]} name={p.name} size="thumb" />
              <span className="recommendation-name">{p.name}</span>
            </Link>{" "}
            <Price value={p.price} />
          </li>
        ))}
      </ul>
    </section>
  );
}
