using System;
using System.Collections.Generic;
using System.Linq;
using Llama.Compiled.Generator.Model;

namespace Llama.Compiled.Generator;

/// <summary>
/// Matches the attribute's config path to an AdditionalFiles item: first as a path relative to
/// the folder of the file holding the attribute, then as a suffix of an item's path (so
/// "stories260K/hf/config.json" finds ".../models/stories260K/hf/config.json").
/// </summary>
internal static class ConfigLocator
{
    public static ConfigFile? Find(ModelTarget target, EquatableArray<ConfigFile> files, List<DiagnosticInfo> diagnostics)
    {
        string wanted = LlamaModelGenerator.NormalizePath(target.ConfigPath);
        if (target.SourceDirectory.Length > 0 && !IsRooted(wanted))
        {
            string relative = Collapse(target.SourceDirectory + "/" + wanted);
            ConfigFile? exact = files.FirstOrDefault(f => Collapse(f.Path) == relative);
            if (exact is not null)
                return exact;
        }

        string suffix = Collapse(wanted);
        ConfigFile[] matches = files.Where(f => Collapse(f.Path) == suffix || Collapse(f.Path).EndsWith("/" + suffix.TrimStart('/'), StringComparison.Ordinal)).ToArray();
        if (matches.Length == 1)
            return matches[0];
        diagnostics.Add(matches.Length == 0
            ? DiagnosticInfo.AtAttribute(Diagnostics.ConfigNotFound, DiagnosticAnchor.ConfigPathArgument, target.ConfigPath)
            : DiagnosticInfo.AtAttribute(Diagnostics.AmbiguousConfig, DiagnosticAnchor.ConfigPathArgument, target.ConfigPath, string.Join(", ", matches.Select(m => m.Path))));
        return null;
    }

    private static bool IsRooted(string path) => path.StartsWith("/", StringComparison.Ordinal) || (path.Length > 1 && path[1] == ':');

    /// <summary>Resolves "." and ".." segments so differently written paths compare equal.</summary>
    private static string Collapse(string path)
    {
        var parts = new List<string>();
        foreach (string part in path.Split('/'))
        {
            if (part == "." || (part.Length == 0 && parts.Count > 0))
                continue;
            if (part == ".." && parts.Count > 0 && parts[parts.Count - 1] != "..")
                parts.RemoveAt(parts.Count - 1);
            else
                parts.Add(part);
        }
        return string.Join("/", parts);
    }
}
