using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;

namespace Llama.Compiled.Generator.Tests;

/// <summary>
/// A config.json written one key per line ("  \"key\": value,"), so a test knows the line and column
/// of every key. Values are raw JSON text.
/// </summary>
internal sealed class ConfigBuilder
{
    private readonly List<KeyValuePair<string, string>> _entries;

    private ConfigBuilder(IEnumerable<KeyValuePair<string, string>> entries) => _entries = entries.ToList();

    /// <summary>A small valid llama config (GQA 8:4, head_dim 8, tied).</summary>
    public static ConfigBuilder Tiny() => new(new Dictionary<string, string>
    {
        ["model_type"] = "\"llama\"",
        ["hidden_size"] = "64",
        ["intermediate_size"] = "172",
        ["num_attention_heads"] = "8",
        ["num_key_value_heads"] = "4",
        ["num_hidden_layers"] = "2",
        ["hidden_act"] = "\"silu\"",
        ["max_position_embeddings"] = "512",
        ["rms_norm_eps"] = "1e-05",
        ["rope_theta"] = "10000.0",
        ["vocab_size"] = "512",
        ["tie_word_embeddings"] = "true",
        ["bos_token_id"] = "1",
        ["eos_token_id"] = "2",
    });

    /// <summary>Sets (or appends) <paramref name="key"/> to the raw JSON <paramref name="rawValue"/>.</summary>
    public ConfigBuilder With(string key, string rawValue)
    {
        var copy = new ConfigBuilder(_entries);
        int index = copy._entries.FindIndex(e => e.Key == key);
        if (index >= 0)
            copy._entries[index] = new(key, rawValue);
        else
            copy._entries.Add(new(key, rawValue));
        return copy;
    }

    public ConfigBuilder Without(string key) => new(_entries.Where(e => e.Key != key));

    /// <summary>The 0-based line of <paramref name="key"/> in <see cref="ToString"/>.</summary>
    public int LineOf(string key)
    {
        int index = _entries.FindIndex(e => e.Key == key);
        if (index < 0)
            throw new ArgumentException($"no key {key}");
        return 1 + index;
    }

    /// <summary>Keys start after two spaces of indentation.</summary>
    public const int KeyColumn = 2;

    public override string ToString()
    {
        var sb = new StringBuilder("{\n");
        for (int i = 0; i < _entries.Count; i++)
            sb.Append("  \"").Append(_entries[i].Key).Append("\": ").Append(_entries[i].Value).Append(i + 1 < _entries.Count ? ",\n" : "\n");
        return sb.Append("}\n").ToString();
    }
}
