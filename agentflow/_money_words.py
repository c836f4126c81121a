"""The vocabulary :mod:`agentflow.money` reads tool names, arguments and descriptions with.

Words are matched whole, after a name or an argument key is split into lower-case words
(``update_reservation_flights`` -> update, reservation, flights). Every list errs towards
stopping a call: a word here can only ever make the money rule fire, or keep it silent
for a read.
"""

from __future__ import annotations

import re


def words(text: str) -> frozenset[str]:
    """The set of whitespace-separated words of ``text``."""
    return frozenset(text.split())


READ_VERBS = words(
    "get list search find lookup look fetch retrieve read show view query describe estimate"
    " quote calculate calc compute preview count browse inspect compare summarize explain"
    " simulate validate verify peek poll download check forecast predict ping think whoami"
    " is has can discover locate analyze diff scan recommend suggest assess export"
)
# Verbs that move money whenever they are the action: nobody pays or refunds by accident.
MONEY_VERBS = words(
    "pay prepay repay refund reimburse payout purchase buy checkout donate remit disburse"
    " compensate debit wire topup cashout rebook charge settle"
)
# What ``charge`` fills when it is not money.
ENERGY = words("battery batteries vehicle ev car device phone scooter station port bike")
# Verbs that move money only when what they act on is money (``transfer_to_agent`` does
# not, ``book_room`` for a meeting does not, ``send_email`` does not).
CONTEXT_VERBS = words(
    "transfer credit capture deposit withdraw tip book reserve order redeem upgrade issue"
    " grant award send give apply add collect return"
)
OTHER_VERBS = words(
    "create make submit place confirm process execute finalize complete modify change update"
    " set edit exchange extend renew subscribe accept approve release run start do handle"
    " trigger post put patch delete remove cancel void annul rescind abort terminate close"
    " open assign move split merge adjust hold request schedule register enroll fulfill ship"
    " dispatch allocate print mail email notify invite publish deploy import sync reset"
    " revoke suspend resume pause freeze unfreeze lock unlock block archive restore upload"
    " enqueue log record track mark tag share follow like reply forward append insert upsert"
    " increment drop purge empty clear erase rollback rerun save store write provision scale"
    " stop reconcile manage waive swap reassign transition respond queue attach convert"
)
# Nouns as often as verbs: after another word they are the object (``fulfill_order``,
# ``convert_quote_to_booking``), so they cannot be the action there.
AMBIGUOUS = words(
    "order book charge transfer credit deposit tip payout refund purchase return change hold"
    " request schedule checkout topup cashout wire log record track mark tag share like"
    " reply forward email mail print drop store ship quote estimate preview view count check"
    " export scan"
)
CONJUNCTIONS = words("and then")
CANCEL_VERBS = words("cancel void annul rescind abort")
# Objects whose cancellation gives money back or forfeits it.
CANCELLED = words(
    "reservation booking itinerary pnr trip flight ticket stay rental order purchase payment"
    " transfer charge tour cruise fare"
)
# Verbs that commit a booking: a confirmed reservation or a placed order is a purchase.
COMMIT_VERBS = words("confirm finalize complete submit place create make issue approve convert")
COMMITTED = words("reservation booking itinerary pnr purchaseorder")
# A work order, a support ticket or a driver's trip are no purchase: these count only
# when something else in the call says it is paid for.
COMMITTED_IF_PAID = words("order ticket trip")
# What a booking verb books when it is paid travel (``book_flight``, ``upgrade_cabin``);
# a seat or a meeting room alone is often free.
TRAVEL = words(
    "flight flights hotel fare trip itinerary cabin stay rental cruise tour train journey"
    " ticket tickets"
)
# Money named as the object: a write acting on these moves money.
STRONG_NOUNS = words(
    "refund payout remittance reimbursement compensation donation voucher giftcard"
    " certificate payroll payrun purchase checkout escrow"
)
# These need an amount, a currency or a payment instrument beside them to mean money.
WEAK_NOUNS = words(
    "payment charge credit bonus tip fare fee funds fund money cash deposit balance salary"
    " wage miles premium rent tuition postage"
)
# A money noun followed by one of these names a thing about money, not money itself
# (``refund_policy``, ``payment_method``, ``credit_limit``, ``charge_line``).
QUALIFIERS = words(
    "policy policies status settings setting config rule rules reason reasons template note"
    " notes method methods history report limit limits window eligibility preference"
    " preferences details info profile address contact category label tag type source"
    " sources instrument account score line lines code codes item items plan plans"
)
# The object is a proposal, not a payment (``create_payment_intent``, ``draft_transfer``).
HEDGES = words("intent draft quote estimate preview simulation sandbox test")
# Word pairs that are one word (``check_in`` is a write, ``top_up`` a payment).
COMPOUNDS = {
    ("check", "in"): "checkin",
    ("check", "out"): "checkout",
    ("top", "up"): "topup",
    ("pay", "out"): "payout",
    ("cash", "out"): "cashout",
    ("gift", "card"): "giftcard",
    ("pay", "run"): "payrun",
    ("payment", "run"): "payrun",
    ("purchase", "order"): "purchaseorder",
}

# Argument keys that pay with something.
INSTRUMENT_WORDS = words("card cards wallet iban instrument funding tender paypal")
INSTRUMENT_PAIRS = frozenset(
    {
        ("payment", "method"),
        ("payment", "methods"),
        ("payment", "source"),
        ("payment", "token"),
        ("bank", "account"),
        ("pay", "with"),
        ("paid", "with"),
        ("funding", "source"),
    }
)
# ``payment_id`` names a payment record as often as the card paid with: the value decides.
INSTRUMENT_VALUE = re.compile(r"card|wallet|paypal|certificate|voucher|gift|bank|^(pm|tok|src|ba)_")
# A tool named after the instrument manages it (``add_card``, ``set_default_payment_method``).
INSTRUMENT_NAME = words("card cards wallet iban instrument billing bank")
INSTRUMENT_OF = words("method methods source sources instrument details profile info token")
AMOUNT_WORDS = words(
    "amount price total fare cost fee fees charge cents subtotal deposit tip budget"
    " usd eur gbp jpy inr chf cad aud"
)
# ``total_bags`` counts bags, not money.
COUNT_WORDS = words(
    "bags baggages baggage items count nights guests seats passengers quantity qty pieces"
    " units bytes"
)
CURRENCY_WORDS = words("currency ccy usd eur gbp jpy inr chf cad aud")
# Where an amount goes: with one, a call sends money to someone else's account.
PAYEE_WORDS = words("payee beneficiary iban destination")
PAYEE_PAIRS = frozenset({("to", "account"), ("account", "number"), ("recipient", "account")})
BOOKING_WORDS = words(
    "reservation reservations booking bookings pnr itinerary trip order orders ticket tickets"
    " passenger passengers seat seats flight flights stay rental folio confirmation quote"
    " locator"
)
DRY_RUN_KEYS = words("dry_run preview validate_only simulate plan_only")

# Money verbs used as verbs in a write's description. Passive forms count only with where
# the money goes ("charged to the card"): "storage is billed" or "no proration is charged
# now" describe a cost, not this call moving money; "the line is charged to in the
# ledger" and "the method invoices are charged to." name no payer.
DESCRIPTION = [
    re.compile(
        r"\b(?:is|are|be|been|being|gets?|was|were)\s+(?:\w+\s+)?(charged|refunded|debited"
        r"|billed|paid|reimbursed|credited|deducted|withdrawn|transferred|taken)(?:\s+\w+){0,2}"
        r"\s+(?:back\b|(?:to|from)\b(?!\s*[.,;:]|\s+(?:in|on|at|by|for|with|when|if)\b))"
    ),
    re.compile(
        r"\b(?:and|then|also|will|shall|would|immediately|which|that)\s+(charges?|refunds?|debits?"
        r"|bills?|pays?|purchases?|reimburses?|deducts?|captures?)\b"
    ),
    re.compile(
        r"(?:^|[.;:]\s*)(charges|refunds|debits|bills|pays|purchases|reimburses|deducts"
        r"|captures|transfers funds|issues (?:a )?(?:refund|credit|voucher))\b"
    ),
    re.compile(r"\b(fare difference|price difference|cancellation fee|change fee)\b"),
    # "the metered price is charged": a definite price passively charged names the payer
    # implicitly (the caller's account); "no fee is charged" has no determiner and stays out,
    # and "billed" is left out: "the prorated amount is billed on the next invoice" is later.
    re.compile(
        r"\b(?:the|its|their|your)\s+(?:\w+\s+)?(?:price|fare|fee|amount|total|balance|cost"
        r"|deposit|premium|rent)s?\s+(?:is|are|will be|gets?)\s+(?:\w+\s+)?"
        r"(charged|debited|collected|captured)\b"
    ),
    re.compile(r"\bdifference (?:is|will be) (?:settled|charged|collected|refunded|paid)\b"),
]
# "Books ..." counts only when the call also carries an amount or a payment method.
BOOKS = re.compile(r"(?:^|[.;:]\s*|\band\s|\bthen\s)(books|reserves|purchases)\b")
