"""The cart's rules without I/O: limits, merge on sign-in, what an order takes out."""

from __future__ import annotations

import pytest

from services.cart.domain import (
    MAX_LINES,
    MAX_QUANTITY,
    Cart,
    CartFullError,
    CartItem,
    LineLimitError,
)


def cart_of(*lines: tuple[str, int]) -> Cart:
    return Cart("u-1", tuple(CartItem(p, q) for p, q in lines))


def test_adding_a_product_twice_adds_to_its_line() -> None:
    cart = Cart("u-1").add("p-1", 2).add("p-2", 1).add("p-1", 3)
    assert cart.items == (CartItem("p-1", 5), CartItem("p-2", 1))


def test_a_line_may_not_pass_the_order_limit_and_the_error_names_quantity() -> None:
    cart = Cart("u-1").add("p-1", 60)
    with pytest.raises(LineLimitError) as err:
        cart.add("p-1", MAX_QUANTITY - 59)
    assert err.value.field == "quantity"
    assert cart.add("p-1", MAX_QUANTITY - 60).quantity_of("p-1") == MAX_QUANTITY


def test_a_full_cart_refuses_a_new_product_but_not_more_of_one_it_holds() -> None:
    cart = cart_of(*((f"p-{i}", 1) for i in range(MAX_LINES)))
    with pytest.raises(CartFullError):
        cart.add("p-new", 1)
    assert cart.add("p-0", 1).quantity_of("p-0") == 2


def test_quantity_zero_removes_the_line() -> None:
    cart = cart_of(("p-1", 2), ("p-2", 1)).set_quantity("p-1", 0)
    assert cart.items == (CartItem("p-2", 1),)


def test_merge_keeps_the_larger_quantity_and_twice_is_once() -> None:
    server = cart_of(("p-1", 2), ("p-2", 5))
    merged, dropped = server.merge([CartItem("p-2", 3), CartItem("p-1", 4), CartItem("p-3", 1)])
    assert merged.items == (CartItem("p-1", 4), CartItem("p-2", 5), CartItem("p-3", 1))
    assert dropped == ()
    again, _ = merged.merge([CartItem("p-2", 3), CartItem("p-1", 4), CartItem("p-3", 1)])
    assert again == merged


def test_merge_into_a_full_cart_lists_what_did_not_fit() -> None:
    server = cart_of(*((f"p-{i}", 1) for i in range(MAX_LINES - 1)))
    merged, dropped = server.merge([CartItem("x-1", 1), CartItem("x-2", 2), CartItem("p-0", 3)])
    assert len(merged.items) == MAX_LINES
    assert merged.quantity_of("x-1") == 1 and merged.quantity_of("p-0") == 3
    assert dropped == ("x-2",)


def test_an_order_takes_out_what_it_ordered_and_leaves_later_additions() -> None:
    cart = cart_of(("p-1", 2), ("p-2", 5), ("p-3", 1))
    left = cart.take_ordered([CartItem("p-1", 2), CartItem("p-2", 3), CartItem("p-9", 1)])
    assert left.items == (CartItem("p-2", 2), CartItem("p-3", 1))
    assert cart.take_ordered(cart.items).items == ()
