"""The weekly cycle of one week's issue: the draft (`draft`), the freeze (`freeze`: its editions
(`editions`) selected, compiled and enqueued once), the send (`send`), and the editor's note (`note`).

Data flows one way: selection (digest.selection) picks, the cycle freezes what it picked into edition
rows, and delivery (digest.delivery) sends those rows; nothing below reads the cycle.
"""
