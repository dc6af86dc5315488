"""Operations rules: routing, teams' business hours, priorities, SLAs and integrations."""
