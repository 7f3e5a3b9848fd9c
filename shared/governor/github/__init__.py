"""GitHub: App authentication, the REST client and the calls the governor makes."""
