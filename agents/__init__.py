"""AutoGen agents: CommunicationsDept, CircuitValidatorAgent, EmailAgent, SelfCorrectionAgent.

Each is a deterministic `BaseChatAgent` that calls the tool functions in `tools` and holds no
business rules of its own; only CommunicationsDept may consult a model, and only to choose
among approved sends.
"""

from agents.circuit_validator import CircuitValidatorAgent
from agents.communications_dept import CommunicationsDept
from agents.email_agent import EmailAgent
from agents.self_correction_agent import SelfCorrectionAgent

__all__ = ["CircuitValidatorAgent", "CommunicationsDept", "EmailAgent", "SelfCorrectionAgent"]
