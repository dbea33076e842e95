"""The store: tables, queries, bulk writes, migrations, site schemas and sharing between daemons."""
