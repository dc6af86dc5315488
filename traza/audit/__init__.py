"""The tamper-evident audit trail: hash chains, anchors, verification, data-subject requests.

- `traza.audit.chain`: the canonical form that is hashed and the verification rules
  (pure Python, no database: an exported trail verifies offline).
- `traza.audit.trail`: verifying the database, writing anchors, exporting a conversation.
- `traza.audit.subjects`: exporting and erasing everything held about a contact.
"""
