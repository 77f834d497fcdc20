-- Orthanc routing rule: send each knee radiograph (DX or CR, knee, AP/PA or no view) to the KneeAlign node
-- as it arrives. The node's own results (SR, Secondary Capture) are neither DX nor CR, so they stay here.
-- Install: "LuaScripts": ["/etc/orthanc/route-knees.lua"] and a "kneealign" entry in "DicomModalities".

local function upper(value)
  return string.upper(value or '')
end

local function isKneeRadiograph(tags)
  local modality = upper(tags['Modality'])
  if modality ~= 'DX' and modality ~= 'CR' then
    return false
  end
  local view = upper(tags['ViewPosition'])
  if view ~= '' and view ~= 'AP' and view ~= 'PA' then
    return false
  end
  local bodyPart = upper(tags['BodyPartExamined'])
  if bodyPart ~= '' then
    return bodyPart == 'KNEE'
  end
  local text = upper(tags['StudyDescription']) .. ' ' .. upper(tags['SeriesDescription'])
  return string.find(text, 'KNEE', 1, true) ~= nil or string.find(text, 'KNIE', 1, true) ~= nil
end

function OnStoredInstance(instanceId, tags, metadata, origin)
  if origin ~= nil and origin['RemoteAet'] == 'KNEEALIGN' then
    return  -- never echo the node's own results back to it
  end
  if isKneeRadiograph(tags) then
    print('routing knee radiograph ' .. instanceId .. ' to KneeAlign')
    SendToModality(instanceId, 'kneealign')
  end
end
