"""A local Sinch: labelled attack scenarios played against VerifyGuard, and an emulation of
Sinch's Verification REST API that calls VerifyGuard's callback.
"""
