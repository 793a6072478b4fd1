"""The Flask application factory and blueprints (thin: parse, authenticate, call a tool).

Built in issue 5.
"""
