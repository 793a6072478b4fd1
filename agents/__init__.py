"""AutoGen agents (CommunicationsDept, CircuitValidatorAgent, EmailAgent, SelfCorrectionAgent).

They call the tool functions in `tools` and hold no business rules. Built in issue 4.
"""
