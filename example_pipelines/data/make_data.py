"""Regenerate the demo datasets: support_tickets.csv and product_reviews.csv (deterministic).

The texts are assembled from hand-written fragments with a fixed seed, so the files are the same on
every run and every machine; re-run this script after editing a fragment and commit the CSVs.

Example:
    $ .venv/bin/python example_pipelines/data/make_data.py
    wrote example_pipelines/data/support_tickets.csv (315 rows, 86 open on 2026-01-06, 42 of them also on 2026-01-05)
    wrote example_pipelines/data/product_reviews.csv (210 rows)
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20260101
DAYS = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(7)]
TICKETS_PER_DAY = 45
REVIEWS_PER_DAY = 30

PLANS = ["Starter", "Team", "Business", "Enterprise"]
FEATURES = ["dashboard", "settings page", "reports tab", "invoice screen", "calendar view", "search", "inbox",
            "file upload", "mobile app", "notifications panel"]
PLATFORMS = ["iOS", "Android", "Windows", "macOS", "Chrome", "Firefox", "Safari"]
FORMATS = ["CSV", "PDF", "Excel"]
INTEGRATIONS = ["Slack", "Salesforce", "HubSpot", "Zapier", "Google Calendar", "Jira", "Microsoft Teams"]
NAMES = ["Maria", "Tom", "Aisha", "Kenji", "Lucas", "Priya", "Olga", "Samuel", "Fatima", "Chen", "Elena", "Diego"]

TICKET_BODIES: dict[str, list[str]] = {
    "billing": [
        "I was charged twice for my {plan} subscription this month. Please refund the duplicate payment.",
        "My invoice for {month} shows ${amount} but the {plan} plan is supposed to cost less.",
        "Our company card was declined when the annual renewal ran. How do I update the payment method?",
        "Can I get a refund? We downgraded from {plan} but were still billed the old price.",
        "Why did the price of the {plan} plan go up without any notice?",
        "I need a VAT invoice with our company address for the last three payments.",
        "We were billed for {seats} seats but only {used} people use the product.",
        "The receipt email never arrived for my payment of ${amount}. Can you resend it?",
        "Please switch us from monthly to yearly billing and apply the discount.",
        "I cancelled my trial but my credit card was still charged ${amount}.",
    ],
    "bug": [
        "The {feature} crashes every time I open it on {platform}.",
        "Exporting to {fmt} gives a 500 error since this morning.",
        "Sync stopped working on {platform} after the {version} update; changes never show up on other devices.",
        "The {feature} is stuck on a loading spinner and never finishes.",
        "Attachments over 10 MB fail to upload with 'unexpected error' in the {feature}.",
        "Dates in the {feature} are shown one day off for users in Tokyo.",
        "Clicking Save in the {feature} does nothing and my changes are lost.",
        "Push notifications stopped arriving on {platform} since version {version}.",
        "The search returns no results for names with accents like 'José'.",
        "The app freezes for about 30 seconds whenever I switch workspaces on {platform}.",
    ],
    "feature_request": [
        "It would be great if the {feature} had a dark mode.",
        "Please add a {integration} integration so we can get updates in one place.",
        "Could you let us export reports to {fmt} on a schedule?",
        "We would love keyboard shortcuts in the {feature}.",
        "Any plans to support recurring tasks? We create the same checklist every week.",
        "Please allow more than one admin per workspace; right now only the owner can change settings.",
        "Suggestion: let us pin important items to the top of the {feature}.",
        "Can you add an API endpoint to bulk import contacts?",
        "It would help a lot to have custom fields on tasks.",
        "Would you consider an offline mode for the {platform} app?",
    ],
    "account": [
        "I forgot my password and the reset link says it has expired.",
        "How do I change the email address on my account? I am leaving my old company address.",
        "I lost my phone and can't get past two-factor authentication.",
        "Please add my colleague {name} to our workspace, the invite email never arrived.",
        "My account is locked after too many login attempts.",
        "How do I transfer ownership of the workspace to {name}?",
        "I can't log in with Google single sign-on since yesterday; it says my account does not exist.",
        "Please delete my account and all of my personal data.",
        "How can I remove a former employee's access to our team?",
        "I want to merge my two accounts into one.",
    ],
    "other": [
        "Do you have an office in Berlin? We'd like to meet your team.",
        "Just wanted to say thanks, your support team was fantastic last week!",
        "Are you hiring engineers in Lisbon?",
        "I'm a journalist writing about productivity tools; who can I talk to for an interview?",
        "We'd like to discuss a reseller partnership for the Nordic market.",
        "Where can I find your security whitepaper and SOC 2 report for our procurement team?",
        "Is your company attending the WebSummit conference this year?",
        "Can you send me some stickers for our office?",
    ],
}
CATEGORY_WEIGHTS = {"billing": 0.27, "bug": 0.28, "feature_request": 0.18, "account": 0.19, "other": 0.08}
OPENINGS = ["", "", "Hi, ", "Hello team, ", "Hi there. ", "Good morning, ", "Urgent: "]
CLOSINGS = ["", "", " Thanks!", " Thank you.", " Regards, {name}", " Please help asap.", " Cheers, {name}"]
CHANNELS = ["email", "chat", "web_form"]
#: Days a ticket stays open after the day it was created (0: closed the same day). About half are still open
#: the next day, so consecutive days share tickets: what the pipelines' row stores reuse.
DAYS_OPEN = {0: 0.45, 1: 0.30, 2: 0.15, 4: 0.05, 6: 0.05}

PRODUCTS = ["Aero blender", "Nimbus kettle", "Trail backpack", "Lumen desk lamp", "Echo earbuds", "Orbit robot vacuum"]
REVIEW_BODIES: dict[str, dict[str, list[str]]] = {
    "product_quality": {
        "pos": ["The {product} feels solid and well built; after {weeks} weeks it still works like new.",
                "Excellent build quality, the {product} is sturdier than the one it replaced."],
        "neg": ["The {product} broke after {weeks} weeks, the plastic cracked near the handle.",
                "Poor quality: the {product} stopped working after a month and started rattling."],
    },
    "delivery": {
        "pos": ["Arrived a day early and very well packed.", "Fast shipping, the {product} arrived in two days."],
        "neg": ["The package took three weeks to arrive and the box was crushed.",
                "Delivery was a mess: the courier left the {product} in the rain."],
    },
    "price_value": {
        "pos": ["Great value for the price, cheaper than the big brands and just as good.",
                "For ${amount} the {product} is a bargain."],
        "neg": ["Way too expensive for what you get; ${amount} is not worth it.",
                "Overpriced. Similar products cost half as much."],
    },
    "ease_of_use": {
        "pos": ["Setup took five minutes and the controls are intuitive.",
                "So easy to use, even my parents figured out the {product} without the manual."],
        "neg": ["The buttons are confusing and the manual doesn't explain the settings.",
                "Pairing the {product} with my phone was a nightmare; the app keeps losing the connection."],
    },
    "customer_service": {
        "pos": ["Support replaced my faulty {product} within a week, no questions asked.",
                "The customer service team answered my email within an hour and solved the issue."],
        "neg": ["Customer service never answered my three emails about a refund.",
                "Support kept me on hold for 40 minutes and then hung up."],
    },
}


def _fill(rng: random.Random, template: str) -> str:
    return template.format(
        plan=rng.choice(PLANS), month=rng.choice(["November", "December", "January"]),
        amount=rng.choice([19, 29, 49, 99, 149, 240, 480]), seats=rng.choice([10, 15, 25, 50]),
        used=rng.choice([3, 4, 6, 8]), feature=rng.choice(FEATURES), platform=rng.choice(PLATFORMS),
        fmt=rng.choice(FORMATS), version=f"4.{rng.randint(2, 9)}.{rng.randint(0, 5)}",
        integration=rng.choice(INTEGRATIONS), name=rng.choice(NAMES), product=rng.choice(PRODUCTS),
        weeks=rng.choice([2, 3, 6, 10]),
    )


def make_tickets(rng: random.Random) -> list[dict[str, str]]:
    """Support tickets: ticket_id, created_date, channel, text (45 a day for 7 days); ``close_tickets`` adds
    ``closed_date``."""
    cats, weights = zip(*CATEGORY_WEIGHTS.items())
    rows = []
    for day in DAYS:
        for i in range(TICKETS_PER_DAY):
            cat = rng.choices(cats, weights)[0]
            opening, body = rng.choice(OPENINGS), _fill(rng, rng.choice(TICKET_BODIES[cat]))
            if opening.endswith(", ") and not body.startswith(("I ", "I'")):
                body = body[0].lower() + body[1:]  # "Hi, how do I..." reads like a person wrote it
            text = opening + body + _fill(rng, rng.choice(CLOSINGS))
            rows.append({"ticket_id": f"T-{day:%m%d}-{i:03d}", "created_date": day.isoformat(),
                         "channel": rng.choice(CHANNELS), "text": text.strip()})
    return rows


def close_tickets(rng: random.Random, rows: list[dict[str, str]]) -> None:
    """Add ``closed_date`` to each ticket: the day it was closed, empty when still open after the last day.
    A ticket is open on every day from ``created_date`` to ``closed_date``, both included."""
    spans, weights = zip(*DAYS_OPEN.items())
    for row in rows:
        closed = dt.date.fromisoformat(row["created_date"]) + dt.timedelta(days=rng.choices(spans, weights)[0])
        row["closed_date"] = closed.isoformat() if closed <= DAYS[-1] else ""


def make_reviews(rng: random.Random) -> list[dict[str, object]]:
    """Product reviews: review_id, created_date, product, rating, text (30 a day for 7 days)."""
    rows: list[dict[str, object]] = []
    topics = list(REVIEW_BODIES)
    for day in DAYS:
        for i in range(REVIEWS_PER_DAY):
            topic = rng.choice(topics)
            positive = rng.random() < 0.55
            rating = rng.choice([4, 5]) if positive else rng.choice([1, 2, 3])
            product = rng.choice(PRODUCTS)
            text = _fill(rng, rng.choice(REVIEW_BODIES[topic]["pos" if positive else "neg"]))
            for other in PRODUCTS:  # _fill picks a random product; keep the row's own product in its text
                text = text.replace(other, product)
            rows.append({"review_id": f"R-{day:%m%d}-{i:03d}", "created_date": day.isoformat(),
                         "product": product, "rating": rating, "text": text})
    return rows


def _open_on(rows: list[dict[str, str]], day: str) -> set[str]:
    return {r["ticket_id"] for r in rows
            if r["created_date"] <= day and (not r["closed_date"] or r["closed_date"] >= day)}


def _write(path: Path, rows: list[dict[str, object]], note: str = "") -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    sys.stdout.write(f"wrote {path.relative_to(HERE.parent.parent)} ({len(rows)} rows{note})\n")


def main() -> None:
    """Write both CSVs next to this script."""
    rng = random.Random(SEED)
    tickets = make_tickets(rng)
    reviews = make_reviews(rng)
    # Its own generator, drawn last: adding closed dates left every earlier ticket and review as it was.
    close_tickets(random.Random(SEED + 1), tickets)
    day1, day2 = _open_on(tickets, "2026-01-05"), _open_on(tickets, "2026-01-06")
    _write(HERE / "support_tickets.csv", tickets,  # type: ignore[arg-type]
           f", {len(day2)} open on 2026-01-06, {len(day1 & day2)} of them also on 2026-01-05")
    _write(HERE / "product_reviews.csv", reviews)


if __name__ == "__main__":
    main()
