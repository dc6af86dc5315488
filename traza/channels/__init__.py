"""Output channels behind one interface (`OutputChannel`): WhatsApp, local outbox, e-mail, SMS.

One module per channel; the sender (`traza.outbound.sender`) chooses one by configuration.
"""
