-- Argo CD health for serving.tfms.dev/TFModelService, from tfms's own conditions.
-- Install: in argocd-cm, key resource.customizations.health.serving.tfms.dev_TFModelService.
local hs = {status = "Progressing", message = "Waiting for tfms"}
if obj.status == nil then return hs end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.message = "tfms has not seen the latest spec yet"
  return hs
end
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      if c.status == "True" then
        hs.status = "Healthy"
      elseif c.status == "False" then
        hs.status = "Degraded"
      elseif c.reason == "Paused" then
        hs.status = "Suspended"
      end
      hs.message = (c.reason or "") .. ": " .. (c.message or "")
    end
  end
end
return hs
