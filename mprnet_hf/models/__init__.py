"""The models: each folder holds exactly the files its Hub repos carry as remote code."""
