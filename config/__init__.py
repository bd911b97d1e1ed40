"""The ground floor: the typed settings (``config.settings``) and their defaults
(``signalyard.toml``, ``alerts.toml``). Every other package imports from here, and this
package imports from none of them."""
