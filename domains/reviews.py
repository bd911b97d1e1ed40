"""Reviews: customers' reviews of a retailer's products, scored for sentiment, keyed by product.

``reviews.raw`` carries ``id, ts, product_id, text, title?, rating?, department?,
recommended?``; ``reviews.scored`` the sentiment label, its probabilities (negative, neutral,
positive), ``sentiment = p_positive - p_negative`` in [-1, 1], and the reviewer's own
recommendation where the review gives one. The model reads what the reviewer wrote: the
recommendation (where given), the title (where given) and the text, as the labeled data's
columns hold them (../shared/data/reviews), never the star rating its label is made from; a
run of negative reviews of one product is what a merchandising or quality team wants an alert
for (config/alerts.toml).
"""

from __future__ import annotations

import random
from typing import Annotated, Any

from pydantic import Field

from domains import register
from domains.base import (
    Category,
    Column,
    ColumnType,
    Domain,
    Name,
    Panel,
    RawEvent,
    ScoredResult,
    Simulation,
    Text,
)


class ReviewEvent(RawEvent):
    product_id: Name
    text: Text
    title: str | None = None
    rating: Annotated[int, Field(ge=1, le=5)] | None = None
    department: str | None = None
    recommended: bool | None = None

    @property
    def entity(self) -> str:
        return self.product_id


class ReviewScore(ScoredResult):
    product_id: str
    label: Category
    p_negative: float
    p_neutral: float
    p_positive: float
    sentiment: float
    recommended: Annotated[bool | None, ColumnType("Nullable(Bool)")] = None


def model_input(event: ReviewEvent) -> str:
    """``"Recommended. Love it! Soft and flattering."``: the reviewer's recommendation and title,
    each where given, before the text. A flag or title left out leaves just the rest."""
    parts = []
    if event.recommended is not None:
        parts.append("Recommended." if event.recommended else "Not recommended.")
    title = (event.title or "").strip()
    if title:
        parts.append(title if title[-1] in ".!?" else f"{title}.")
    parts.append(event.text)
    return " ".join(parts)


# The synthetic world: each product has a quality that shifts now and then (a bad batch, a
# fixed one); reviews are drawn from templates of a star rating that follows the quality.
PRODUCTS = 30
DEPARTMENTS = ("Tops", "Dresses", "Bottoms", "Intimate", "Jackets")
ITEMS = ("dress", "sweater", "top", "jacket", "skirt", "blouse", "pants", "cardigan")
REVIEWS: dict[int, tuple[str, ...]] = {
    1: (
        "The {item} fell apart after one wash. Very disappointed, returning it.",
        "Terrible quality, the seams on this {item} ripped the first time I wore it.",
        "Nothing like the picture. The fabric of the {item} is cheap and scratchy.",
    ),
    2: (
        "I wanted to love this {item} but the fit is way off and the material feels thin.",
        "The color is dull in person and the {item} runs very small. Sending it back.",
    ),
    3: (
        "The {item} is okay. Nice color but the sizing is a bit strange.",
        "Decent {item} for the price, though the fabric is thinner than I expected.",
        "Mixed feelings: the {item} looks cute but it wrinkles easily.",
    ),
    4: (
        "Really nice {item}, fits well. Only wish it came in more colors.",
        "Pretty {item} and comfortable, I sized down and it is perfect.",
    ),
    5: (
        "I love this {item}! Flattering fit, soft fabric, and it washes well.",
        "Perfect {item}, I get compliments every time I wear it. Bought it in two colors.",
        "Beautiful quality, the {item} is even better in person. Highly recommend.",
    ),
}
TITLES = {1: "Disappointed", 2: "Not for me", 3: "Just okay", 4: "Nice", 5: "Love it!"}
# Half the titles only name the item, as many real ones do, so the title does not give the
# rating away (the model reads it).
PLAIN_TITLES = ("My new {item}", "The {item}", "{item} review")
# Star ratings drawn for a product of good or bad quality.
RATING_WEIGHTS = {"good": (2, 3, 8, 30, 57), "bad": (45, 25, 15, 10, 5)}


def sentiment_of(rating: int) -> str:
    """The label of a star rating, as the labeled data has it: 1-2 negative, 3 neutral, 4-5
    positive."""
    return "negative" if rating <= 2 else "neutral" if rating == 3 else "positive"


class ReviewsWorld(Simulation):
    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.products = {f"P{n:04d}": "good" for n in range(PRODUCTS)}
        self.departments = {product: rng.choice(DEPARTMENTS) for product in self.products}

    def draw(self) -> tuple[dict[str, Any], str]:
        """A review and its true sentiment."""
        rng = self.rng
        product = rng.choice(list(self.products))
        if rng.random() < 0.01:
            self.products[product] = rng.choice(("good", "good", "bad"))
        rating = rng.choices(range(1, 6), weights=RATING_WEIGHTS[self.products[product]])[0]
        item = rng.choice(ITEMS)
        event: dict[str, Any] = {
            "product_id": product,
            "text": rng.choice(REVIEWS[rating]).format(item=item),
            "rating": rating,
            "department": self.departments[product],
        }
        if rng.random() < 0.8:
            plain = rng.choice(PLAIN_TITLES).format(item=item).capitalize()
            event["title"] = TITLES[rating] if rng.random() < 0.5 else plain
        if rng.random() < 0.9:
            event["recommended"] = rating >= 4 or (rating == 3 and rng.random() < 0.5)
        return event, sentiment_of(rating)


def event_fields(text: str, source: str, rng: random.Random) -> dict[str, Any]:
    """A labeled review as a review of a product drawn at random."""
    return {"product_id": f"P{rng.randrange(PRODUCTS):04d}", "text": text}


REVIEWS_DOMAIN = register(
    Domain(
        name="reviews",
        task="sentiment",
        event=ReviewEvent,
        result=ReviewScore,
        entity="product_id",
        event_columns=(
            Column("product_id", "String"),
            Column("title", "String", optional=True),
            Column("text", "String"),
            Column("rating", "Nullable(UInt8)"),
            Column("department", "LowCardinality(String)", optional=True),
            Column("recommended", "Nullable(Bool)"),
        ),
        model_input=model_input,
        labeled_columns=("product_id", "title", "department", "rating", "recommended"),
        summary_field="label",
        feedback_field="label",
        score_field="sentiment",
        result_fields=lambda event: {"recommended": event.recommended},
        panel=Panel(
            "Negative reviews and reviews not recommending (share, 10 s)",
            """SELECT t, series, value FROM (
                SELECT {bucket} AS t, 'negative' AS series, avg(label = 'negative') AS value
                FROM reviews_scores FINAL WHERE {in_window} GROUP BY t
                UNION ALL
                SELECT {bucket} AS t, 'not recommended', avg(NOT assumeNotNull(recommended))
                FROM reviews_scores FINAL
                WHERE {in_window} AND recommended IS NOT NULL GROUP BY t)
            ORDER BY t, series""",
            y_max=1.0,
            percent=True,
        ),
        simulation=ReviewsWorld,
        event_fields=event_fields,
        data_sets=("reviews",),
    )
)
