using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;
using System.Text.Json;

namespace Llama.Compiled.Generator.Tests;

/// <summary>
/// Seeded generator of hostile config.json texts: real configs with keys dropped, values swapped for
/// other types, zero/negative/huge/overflowing numbers, escapes, nulls, arrays for objects, duplicate
/// keys, truncation, random characters, deep nesting, a BOM; plus random small valid configs, so
/// the emitted code is compiled for odd shapes too.
/// </summary>
internal sealed class ConfigFuzzer
{
    private static readonly string[] s_numbers =
    [
        "0", "-0", "-0.0", "0.0", "-1", "1", "2", "3", "7", "8", "9", "64", "100", "4096", "4096.0", "1.5", "-2.5", "1E3", "1e2",
        "1e400", "-1e400", "1e-400", "1e-5", "1e18", "99999999999999999999", "-99999999999999999999", "2147483647",
        "2147483648", "-2147483648", "-2147483649", "123456789", "65536", "0.000001", "1.7976931348623157e308",
    ];

    private static readonly string[] s_strings =
    [
        "\"\"", "\"llama\"", "\"mistral\"", "\"qwen2\"", "\"gpt2\"", "\"silu\"", "\"gelu\"", "\"llama3\"", "\"linear\"", "\"yarn\"",
        "\"\\u0000\\n\\t\\\"\\\\\"", "\"\\ud800\"", "\"\\uD83D\\uDE00\"", "\"é√ß\"", "\"\\uZZZZ\"", "\"a\\qb\"", "\"\\/\"", "\"64\"",
        "\"" + new string('x', 5000) + "\"",
    ];

    private static readonly string[] s_others =
    [
        "true", "false", "null", "[]", "{}", "[1, 2]", "[null]", "[[[]]]", "[128001, 128008, 128009]", "[-1]", "[\"2\"]",
        "{\"a\": 1}", "{\"rope_type\": \"llama3\"}",
    ];

    /// <summary>Keys whose huge-but-valid integers make the emitter write one line per unit (see the dedicated layer-count test).</summary>
    private static readonly HashSet<string> s_linearCostKeys = new(StringComparer.Ordinal) { "num_hidden_layers" };

    private readonly Random _rng;
    private readonly List<List<KeyValuePair<string, string>>> _seeds;

    public ConfigFuzzer(int seed, IEnumerable<string> seedConfigs)
    {
        _rng = new Random(seed);
        _seeds = seedConfigs.Select(Parse).ToList();
    }

    /// <summary>The kind of the last text returned by <see cref="Next"/>, for failure messages.</summary>
    public string LastKind { get; private set; } = "";

    public string Next()
    {
        int roll = _rng.Next(100);
        if (roll < 25)
        {
            LastKind = "random valid shape";
            return RandomValidConfig();
        }
        if (roll < 80)
        {
            LastKind = "mutated config";
            return MutatedConfig();
        }
        LastKind = "hostile text";
        return HostileText();
    }

    private static List<KeyValuePair<string, string>> Parse(string json)
    {
        using JsonDocument doc = JsonDocument.Parse(json);
        return doc.RootElement.EnumerateObject().Select(p => new KeyValuePair<string, string>(p.Name, p.Value.GetRawText())).ToList();
    }

    private T Pick<T>(IReadOnlyList<T> items) => items[_rng.Next(items.Count)];

    private string RandomValue(string key)
    {
        switch (_rng.Next(6))
        {
            case 0:
            case 1:
                string number = Pick(s_numbers);
                if (s_linearCostKeys.Contains(key) && double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out double d)
                    && d >= 1e4 && d <= int.MaxValue && d == Math.Floor(d))
                    return "12";
                return number;
            case 2:
                return Pick(s_strings);
            case 3:
                return Pick(s_others);
            case 4:
                return RopeScaling();
            default:
                return _rng.Next(-3, 300).ToString(CultureInfo.InvariantCulture);
        }
    }

    private string RopeScaling()
    {
        var parts = new List<string>();
        string[] types = ["llama3", "linear", "dynamic", "yarn", "default", "longrope", ""];
        if (_rng.Next(4) > 0)
            parts.Add($"\"{(_rng.Next(2) == 0 ? "rope_type" : "type")}\": \"{Pick(types)}\"");
        foreach (string key in new[] { "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings" })
        {
            if (_rng.Next(5) > 0)
                parts.Add($"\"{key}\": {(_rng.Next(3) == 0 ? Pick(s_numbers) : (_rng.NextDouble() * 64).ToString("R", CultureInfo.InvariantCulture))}");
        }
        return "{" + string.Join(", ", parts) + "}";
    }

    private string MutatedConfig()
    {
        var entries = new List<KeyValuePair<string, string>>(Pick(_seeds));
        int mutations = 1 + _rng.Next(3);
        for (int m = 0; m < mutations && entries.Count > 0; m++)
        {
            int index = _rng.Next(entries.Count);
            string key = entries[index].Key;
            switch (_rng.Next(7))
            {
                case 0: // drop a key
                    entries.RemoveAt(index);
                    break;
                case 1: // duplicate a key with another value
                    entries.Insert(_rng.Next(entries.Count + 1), new(key, RandomValue(key)));
                    break;
                case 2: // a key spelled with escapes ("hidden\u005fsize" is hidden_size)
                    entries[index] = new(key.Replace("_", "\\u005f"), entries[index].Value);
                    break;
                case 3:
                    entries[index] = new(key, "null");
                    break;
                default: // another value, often of another type
                    entries[index] = new(key, RandomValue(key));
                    break;
            }
        }
        string text = Write(entries);
        if (_rng.Next(10) == 0)
            text = "\uFEFF" + text;
        if (_rng.Next(15) == 0)
            text = text.Substring(0, _rng.Next(text.Length)); // truncated
        return text;
    }

    private string Write(List<KeyValuePair<string, string>> entries)
    {
        bool compact = _rng.Next(3) == 0;
        string newline = _rng.Next(4) == 0 ? "\r\n" : "\n";
        var sb = new StringBuilder("{");
        for (int i = 0; i < entries.Count; i++)
        {
            if (!compact)
                sb.Append(newline).Append("  ");
            sb.Append('"').Append(entries[i].Key).Append("\":").Append(compact ? "" : " ").Append(entries[i].Value);
            if (i + 1 < entries.Count)
                sb.Append(',');
        }
        return sb.Append(compact ? "}" : newline + "}").ToString();
    }

    private string HostileText()
    {
        switch (_rng.Next(10))
        {
            case 0: // random characters, controls, lone surrogates and all
            {
                var chars = new char[_rng.Next(0, 400)];
                for (int i = 0; i < chars.Length; i++)
                    chars[i] = (char)_rng.Next(0, 0x10000);
                return new string(chars);
            }
            case 1: // random JSON punctuation
            {
                const string alphabet = "{}[]\":,0123456789-+.eE tfnrul\\\n";
                var chars = new char[_rng.Next(1, 300)];
                for (int i = 0; i < chars.Length; i++)
                    chars[i] = alphabet[_rng.Next(alphabet.Length)];
                return new string(chars);
            }
            case 2: // 10,000 nested arrays as a value
                return Write([.. Pick(_seeds), new("rope_scaling", new string('[', 10_000) + new string(']', 10_000))]);
            case 3: // 10,000 nested objects as the document
            {
                var sb = new StringBuilder();
                for (int i = 0; i < 10_000; i++)
                    sb.Append("{\"hidden_size\":");
                sb.Append('1');
                sb.Append('}', 10_000);
                return sb.ToString();
            }
            case 4: // unterminated nesting
                return new string('[', 20_000);
            case 5: // a document that is not an object
                return Pick(new[] { "[]", "null", "42", "\"config\"", "true", "[{\"hidden_size\": 64}]", "", " ", "\uFEFF" });
            case 6: // random bytes decoded as UTF-8 (replacement characters, NULs)
            {
                var bytes = new byte[_rng.Next(0, 300)];
                _rng.NextBytes(bytes);
                return Encoding.UTF8.GetString(bytes);
            }
            case 7: // a valid config followed by junk
                return Write(Pick(_seeds)) + Pick(new[] { "}", ",", "{}", "\0", "// comment", "\u2028" });
            case 8: // comments and trailing commas that JSON5 would allow
                return "{\n  // a comment\n  \"hidden_size\": 64,\n}";
            default: // a huge flat array value
                return Write([.. Pick(_seeds), new("eos_token_id", "[" + string.Join(",", Enumerable.Range(0, 50_000)) + "]")]);
        }
    }

    /// <summary>A random small config that should compile: odd widths, 1-token vocabularies, GQA, head_dim, biases, scaling.</summary>
    private string RandomValidConfig()
    {
        int kvHeads = 1 + _rng.Next(4);
        int heads = kvHeads * (1 + _rng.Next(4));
        int headDim = 2 * (1 + _rng.Next(12));
        bool explicitHeadDim = _rng.Next(3) == 0;
        int hidden = explicitHeadDim ? 1 + _rng.Next(80) : heads * headDim;
        int vocab = 1 + _rng.Next(300);
        int context = 1 + _rng.Next(300);
        string modelType = Pick(new[] { "llama", "llama", "mistral", "qwen2" });
        var entries = new List<KeyValuePair<string, string>>
        {
            new("model_type", $"\"{modelType}\""),
            new("hidden_size", hidden.ToString(CultureInfo.InvariantCulture)),
            new("intermediate_size", (1 + _rng.Next(200)).ToString(CultureInfo.InvariantCulture)),
            new("num_attention_heads", heads.ToString(CultureInfo.InvariantCulture)),
            new("num_key_value_heads", kvHeads.ToString(CultureInfo.InvariantCulture)),
            new("num_hidden_layers", (1 + _rng.Next(4)).ToString(CultureInfo.InvariantCulture)),
            new("vocab_size", vocab.ToString(CultureInfo.InvariantCulture)),
            new("max_position_embeddings", context.ToString(CultureInfo.InvariantCulture)),
            new("rms_norm_eps", Pick(new[] { "1e-05", "1e-06", "0.5", "1e-12" })),
            new("rope_theta", Pick(new[] { "10000.0", "500000", "1.0001", "1e30" })),
            new("tie_word_embeddings", _rng.Next(2) == 0 ? "true" : "false"),
            new("bos_token_id", _rng.Next(3) == 0 ? "null" : _rng.Next(vocab).ToString(CultureInfo.InvariantCulture)),
            new("eos_token_id", _rng.Next(3) == 0 ? $"[{_rng.Next(vocab)}, {_rng.Next(vocab)}]" : _rng.Next(vocab).ToString(CultureInfo.InvariantCulture)),
        };
        if (explicitHeadDim)
            entries.Add(new("head_dim", headDim.ToString(CultureInfo.InvariantCulture)));
        if (modelType == "llama" && _rng.Next(3) == 0)
            entries.Add(new("attention_bias", "true"));
        if (modelType == "llama" && _rng.Next(3) == 0)
            entries.Add(new("mlp_bias", "true"));
        if (modelType == "mistral")
            entries.Add(new("sliding_window", (context + _rng.Next(100)).ToString(CultureInfo.InvariantCulture)));
        if (_rng.Next(4) == 0)
        {
            entries.Add(new("rope_scaling",
                $"{{\"rope_type\": \"llama3\", \"factor\": {1 + _rng.Next(32)}.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": {1 + _rng.Next(64)}}}"));
        }
        return Write(entries);
    }
}
