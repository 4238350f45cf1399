"""The billing API: receives every cluster's usage reports, prices them by plan, bills through Stripe.

Modules: ``settings`` (BILLING_* settings, tokens), ``models`` (the report and customer terms as
the API validates them), ``pricing`` (plans, prices, invoices; pure, Decimal), ``storage``
(SQLite and PostgreSQL: reports, hourly usage, customers, the Stripe outbox), ``app`` (aiohttp
handlers), ``stripe_push`` (outbox -> Stripe meter events, in the background), ``server``
(migrate, listen, push, stop cleanly) and ``cli`` (``cluster-exporter billing-api ...``).
"""
