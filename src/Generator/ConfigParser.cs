using System.Collections.Generic;
using System.Globalization;
using Llama.Compiled.Generator.Json;
using Llama.Compiled.Generator.Model;
using Microsoft.CodeAnalysis.Text;

namespace Llama.Compiled.Generator;

/// <summary>
/// Turns the text of a Hugging Face <c>config.json</c> into a validated <see cref="ModelSpec"/>,
/// or into diagnostics that point at the offending key. Keys with a default in transformers'
/// <c>LlamaConfig</c> take that default when absent; the sizes that define a model are required.
/// </summary>
internal sealed class ConfigParser
{
    /// <summary>Bounds the generated code: one straight-line call per layer.</summary>
    private const int MaxLayers = 1024;

    private static readonly string[] s_supportedModelTypes = LlamaArchitecture.ModelTypes;

    private readonly ConfigFile _file;
    private readonly SourceText _text;
    private readonly List<DiagnosticInfo> _diagnostics = new();
    private readonly HashSet<string> _mistyped = new();
    private JsonObject _root = null!;

    private ConfigParser(ConfigFile file)
    {
        _file = file;
        _text = SourceText.From(file.Text);
    }

    /// <summary>Parses <paramref name="file"/>; returns null when any diagnostic was reported.</summary>
    /// <param name="file">The config text and path.</param>
    /// <param name="maxContextCap">The attribute's MaxContext (0 = none).</param>
    /// <param name="diagnostics">Receives the problems found.</param>
    public static ModelSpec? Parse(ConfigFile file, int maxContextCap, List<DiagnosticInfo> diagnostics)
    {
        var parser = new ConfigParser(file);
        ModelSpec? spec = parser.Parse(maxContextCap);
        diagnostics.AddRange(parser._diagnostics);
        return parser._diagnostics.Count == 0 ? spec : null;
    }

    private ModelSpec? Parse(int maxContextCap)
    {
        JsonNode? root = JsonParser.Parse(_file.Text, out int errorOffset, out string? error);
        if (root is null)
        {
            var span = new TextSpan(errorOffset, errorOffset < _file.Text.Length ? 1 : 0);
            LinePosition at = _text.Lines.GetLinePosition(errorOffset);
            Report(Diagnostics.InvalidJson, span, $"{error} at line {at.Line + 1}, column {at.Character + 1}");
            return null;
        }
        if (root is not JsonObject obj)
        {
            Report(Diagnostics.InvalidJson, root.Span, "the document must be a JSON object");
            return null;
        }
        _root = obj;

        string modelType = String("model_type", "llama");
        if (System.Array.IndexOf(s_supportedModelTypes, modelType) < 0)
            ReportAt("model_type", Diagnostics.Unsupported, $"model type '{modelType}'; supported: {string.Join(", ", s_supportedModelTypes)}");
        string hiddenAct = String("hidden_act", "silu");
        if (hiddenAct != "silu")
            ReportAt("hidden_act", Diagnostics.Unsupported, $"activation '{hiddenAct}'; LLaMA-family models use 'silu' (SwiGLU)");
        string torchDtype = String("torch_dtype", "");
        RopeScaling? ropeScaling = ParseRopeScaling();

        // Qwen2 always has q/k/v biases (and no o_proj bias); Llama's attention_bias adds all four.
        bool attentionBias = Bool("attention_bias", false);
        bool qkvBias = LlamaArchitecture.HasQkvBias(modelType) || attentionBias;
        bool mlpBias = Bool("mlp_bias", false);

        int hiddenSize = RequiredInt("hidden_size", "the width of the residual stream");
        int intermediateSize = RequiredInt("intermediate_size", "the width of the feed-forward layer");
        int layerCount = RequiredInt("num_hidden_layers", "the number of decoder layers");
        int headCount = RequiredInt("num_attention_heads", "the number of query heads");
        int vocabSize = RequiredInt("vocab_size", "the number of tokens");
        int kvHeadCount = Int("num_key_value_heads", headCount);
        int maxPositions = Int("max_position_embeddings", 2048);
        double rmsNormEps = Number("rms_norm_eps", 1e-6);
        double ropeTheta = Number("rope_theta", 10000);
        bool tied = Bool("tie_word_embeddings", false);
        int bosTokenId = OptionalTokenId("bos_token_id", 1);
        EquatableArray<int> eosTokenIds = TokenIds("eos_token_id", 2);

        RequirePositive("hidden_size", hiddenSize);
        RequirePositive("intermediate_size", intermediateSize);
        RequirePositive("num_hidden_layers", layerCount);
        if (layerCount > MaxLayers)
            ReportAt("num_hidden_layers", Diagnostics.InvalidValue,
                $"{layerCount} layers; the generator writes one call per layer and supports at most {MaxLayers} (the largest published LLaMA models have 126)");
        RequirePositive("num_attention_heads", headCount);
        RequirePositive("vocab_size", vocabSize);
        RequirePositive("num_key_value_heads", kvHeadCount);
        RequirePositive("max_position_embeddings", maxPositions);
        if (rmsNormEps <= 0 || rmsNormEps >= 1)
            ReportAt("rms_norm_eps", Diagnostics.InvalidValue, "it must be a small positive number such as 1e-5");
        if (ropeTheta <= 1)
            ReportAt("rope_theta", Diagnostics.InvalidValue, "the RoPE base must be greater than 1 (usually 10000 or 500000)");
        if (_diagnostics.Count > 0)
            return null;

        if (headCount % kvHeadCount != 0)
            ReportAt("num_key_value_heads", Diagnostics.InvalidValue,
                $"num_attention_heads ({headCount}) must be a multiple of num_key_value_heads ({kvHeadCount})");

        int headDim;
        if (_root.Find("head_dim") is { Value: not JsonNull })
        {
            headDim = Int("head_dim", 0);
            RequirePositive("head_dim", headDim);
        }
        else if (hiddenSize % headCount != 0)
        {
            ReportAt("hidden_size", Diagnostics.InvalidValue,
                $"hidden_size ({hiddenSize}) is not divisible by num_attention_heads ({headCount}); give head_dim explicitly");
            return null;
        }
        else
        {
            headDim = hiddenSize / headCount;
        }
        if (headDim > 0 && headDim % 2 != 0)
            ReportAt(_root.Find("head_dim") is null ? "hidden_size" : "head_dim", Diagnostics.InvalidValue,
                $"the head dimension ({headDim}) is odd, but RoPE rotates pairs of dimensions");

        int maxContext = maxPositions;
        if (maxContextCap < 0)
            _diagnostics.Add(DiagnosticInfo.AtAttribute(Diagnostics.InvalidAttribute, DiagnosticAnchor.MaxContextArgument,
                "MaxContext", $"{maxContextCap} is negative; use a positive context length, or 0 for the config's max_position_embeddings"));
        else if (maxContextCap > maxPositions)
            _diagnostics.Add(DiagnosticInfo.AtAttribute(Diagnostics.InvalidAttribute, DiagnosticAnchor.MaxContextArgument,
                "MaxContext", $"{maxContextCap} exceeds the model's max_position_embeddings ({maxPositions})"));
        else if (maxContextCap > 0)
            maxContext = maxContextCap;

        CheckSlidingWindow(modelType, maxContext);

        // Every tensor and per-layer KV cache is addressed with 32-bit indices (spans).
        CheckFitsInt32("vocab_size", (long)vocabSize * hiddenSize, "the embedding [vocab_size, hidden_size]");
        CheckFitsInt32("intermediate_size", (long)intermediateSize * hiddenSize, "a feed-forward matrix");
        CheckFitsInt32("num_attention_heads", (long)headCount * headDim * hiddenSize, "the query projection");
        CheckFitsInt32("max_position_embeddings", (long)kvHeadCount * headDim * maxContext,
            "one layer's KV cache; cap the context with [LlamaModel(..., MaxContext = 4096)]");
        foreach (int eos in eosTokenIds)
        {
            if (eos >= vocabSize)
            {
                ReportAt("eos_token_id", Diagnostics.InvalidValue, $"token id {eos} is not below vocab_size ({vocabSize})");
                break; // one error for the key, not one per id
            }
        }
        if (bosTokenId >= vocabSize)
            ReportAt("bos_token_id", Diagnostics.InvalidValue, $"token id {bosTokenId} is not below vocab_size ({vocabSize})");

        if (_diagnostics.Count > 0)
            return null;
        return new ModelSpec(modelType, hiddenSize, intermediateSize, layerCount, headCount, kvHeadCount, headDim,
            vocabSize, maxContext, rmsNormEps, ropeTheta, tied, bosTokenId, eosTokenIds,
            qkvBias, OutputBias: attentionBias, mlpBias, ropeScaling, torchDtype);
    }

    /// <summary>
    /// rope_scaling: null, absent, "default", "linear" or "llama3" (with its four parameters).
    /// Other schemes (dynamic NTK, YaRN, LongRoPE) change RoPE at run time and are not supported.
    /// </summary>
    private RopeScaling? ParseRopeScaling()
    {
        JsonProperty? property = _root.Find("rope_scaling");
        if (property is null || property.Value is JsonNull)
            return null;
        if (property.Value is not JsonObject scaling)
        {
            WrongType(property, "an object or null");
            return null;
        }
        // transformers reads "rope_type", older configs say "type".
        JsonProperty? typeProperty = scaling.Find("rope_type") ?? scaling.Find("type");
        if (typeProperty?.Value is not JsonString type)
        {
            ReportAt("rope_scaling", Diagnostics.Unsupported,
                "rope_scaling has no \"rope_type\"; give \"llama3\", \"linear\" or \"default\", or set rope_scaling to null");
            return null;
        }
        switch (type.Value)
        {
            case "default":
                return null;
            case "linear":
                return new RopeScaling("linear", ScalingNumber(scaling, "factor"), 0, 0, 0);
            case "llama3":
                double factor = ScalingNumber(scaling, "factor");
                double low = ScalingNumber(scaling, "low_freq_factor");
                double high = ScalingNumber(scaling, "high_freq_factor");
                double original = ScalingNumber(scaling, "original_max_position_embeddings");
                if (_diagnostics.Count > 0)
                    return null;
                if (high <= low)
                {
                    ReportAt("rope_scaling", Diagnostics.InvalidValue, $"high_freq_factor ({high}) must be greater than low_freq_factor ({low})");
                    return null;
                }
                if (original < 1 || original > int.MaxValue || original != System.Math.Floor(original))
                {
                    ReportAt("rope_scaling", Diagnostics.InvalidValue, "original_max_position_embeddings must be a positive integer");
                    return null;
                }
                return new RopeScaling("llama3", factor, low, high, (int)original);
            default:
                Report(Diagnostics.Unsupported, type.Span, "rope_scaling",
                    $"RoPE scaling type '{type.Value}'; supported: llama3, linear, default (or null)");
                return null;
        }
    }

    /// <summary>A positive number inside rope_scaling.</summary>
    private double ScalingNumber(JsonObject scaling, string key)
    {
        JsonProperty? property = scaling.Find(key);
        if (property is null)
        {
            ReportAt("rope_scaling", Diagnostics.MissingKey, $"rope_scaling.{key} is required for this RoPE scaling type");
            return 1;
        }
        if (property.Value is JsonNumber number
            && double.TryParse(number.Text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value)
            && value > 0 && !double.IsInfinity(value))
            return value;
        Report(Diagnostics.InvalidValue, property.Value.Span, "rope_scaling." + key, "it must be a positive number");
        return 1;
    }

    /// <summary>
    /// Mistral-style sliding-window attention: exact as full attention while the context is no longer
    /// than the window, so the window must cover the compiled context. Qwen2 configs carry a window
    /// that is off unless use_sliding_window is true.
    /// </summary>
    private void CheckSlidingWindow(string modelType, int maxContext)
    {
        JsonProperty? property = _root.Find("sliding_window");
        if (property is null || property.Value is JsonNull)
            return;
        if (modelType == "qwen2" && !Bool("use_sliding_window", false))
            return;
        int window = Int("sliding_window", int.MaxValue);
        if (window < maxContext && _diagnostics.Count == 0)
            _diagnostics.Add(DiagnosticInfo.Create(Diagnostics.SlidingWindow,
                LocationInfo.InText(_file.Path, _text, TextSpan.FromBounds(property.NameSpan.Start, property.Value.Span.End)),
                _file.Path, window.ToString(CultureInfo.InvariantCulture), maxContext.ToString(CultureInfo.InvariantCulture)));
    }

    private int RequiredInt(string key, string meaning)
    {
        if (_root.Find(key) is null or { Value: JsonNull })
        {
            Report(Diagnostics.MissingKey, _root.Span.Length > 0 ? new TextSpan(_root.Span.Start, 1) : _root.Span, key, meaning);
            return 0;
        }
        return Int(key, 0);
    }

    /// <summary>An integer key; absent or null takes <paramref name="fallback"/>, as transformers' defaults do.</summary>
    private int Int(string key, int fallback)
    {
        JsonProperty? property = _root.Find(key);
        if (property is null || property.Value is JsonNull)
            return fallback;
        if (property.Value is JsonNumber number && TryParseInt(number.Text, out int value))
            return value;
        WrongType(property, "an integer");
        return fallback;
    }

    private double Number(string key, double fallback)
    {
        JsonProperty? property = _root.Find(key);
        if (property is null || property.Value is JsonNull)
            return fallback;
        if (property.Value is JsonNumber number
            && double.TryParse(number.Text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value)
            && !double.IsInfinity(value))
            return value;
        WrongType(property, "a number");
        return fallback;
    }

    private bool Bool(string key, bool fallback)
    {
        JsonProperty? property = _root.Find(key);
        if (property is null || property.Value is JsonNull)
            return fallback;
        if (property.Value is JsonBoolean b)
            return b.Value;
        WrongType(property, "true or false");
        return fallback;
    }

    private string String(string key, string fallback)
    {
        JsonProperty? property = _root.Find(key);
        if (property is null)
            return fallback;
        if (property.Value is JsonString s)
            return s.Value;
        WrongType(property, "a string");
        return fallback;
    }

    /// <summary>A token id that may be null or absent (then -1 = none, or the default).</summary>
    private int OptionalTokenId(string key, int fallback)
    {
        JsonProperty? property = _root.Find(key);
        if (property is null)
            return fallback;
        if (property.Value is JsonNull)
            return -1;
        int id = Int(key, fallback);
        if (id < 0)
            ReportAt(key, Diagnostics.InvalidValue, "a token id cannot be negative");
        return id;
    }

    /// <summary>An id or a list of ids (Llama 3 lists several end-of-sequence tokens).</summary>
    private EquatableArray<int> TokenIds(string key, int fallback)
    {
        JsonProperty? property = _root.Find(key);
        if (property is null)
            return new EquatableArray<int>(new[] { fallback });
        if (property.Value is JsonNull)
            return EquatableArray<int>.Empty;
        var ids = new List<int>();
        IEnumerable<JsonNode> items = property.Value is JsonArray array ? array.Items : new[] { property.Value };
        foreach (JsonNode item in items)
        {
            if (item is JsonNumber number && TryParseInt(number.Text, out int id) && id >= 0)
            {
                ids.Add(id);
            }
            else
            {
                WrongType(property, "a token id or a list of token ids");
                break;
            }
        }
        return new EquatableArray<int>(ids.ToArray());
    }

    private void RequirePositive(string key, int value)
    {
        if (value <= 0 && !_mistyped.Contains(key) && _root.Find(key) is { Value: JsonNumber })
            ReportAt(key, Diagnostics.InvalidValue, $"{value} is not a positive size");
    }

    private void CheckFitsInt32(string key, long elements, string what)
    {
        if (elements > int.MaxValue)
            ReportAt(key, Diagnostics.Unsupported, $"{what} would hold {elements} elements, more than 2^31 - 1");
    }

    private static bool TryParseInt(string text, out int value)
    {
        if (int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out value))
            return true;
        // Some exporters write integers as 4096.0; accept them when the value is exact.
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double d)
            && d == System.Math.Floor(d) && d >= int.MinValue && d <= int.MaxValue)
        {
            value = (int)d;
            return true;
        }
        return false;
    }

    private void WrongType(JsonProperty property, string expected)
    {
        _mistyped.Add(property.Name);
        Report(Diagnostics.WrongType, property.Value.Span, property.Name, expected, $"{property.Value.Kind} {Excerpt(property.Value)}");
    }

    private string Excerpt(JsonNode node)
    {
        string text = _file.Text.Substring(node.Span.Start, node.Span.Length);
        return text.Length <= 40 ? text : text.Substring(0, 37) + "...";
    }

    private void ReportAt(string key, Microsoft.CodeAnalysis.DiagnosticDescriptor descriptor, string detail)
    {
        JsonProperty? property = _root.Find(key);
        TextSpan span = property is null ? new TextSpan(_root.Span.Start, 1) : TextSpan.FromBounds(property.NameSpan.Start, property.Value.Span.End);
        Report(descriptor, span, key, detail);
    }

    private void Report(Microsoft.CodeAnalysis.DiagnosticDescriptor descriptor, TextSpan span, params string[] args)
    {
        var messageArgs = new string[args.Length + 1];
        messageArgs[0] = _file.Path;
        args.CopyTo(messageArgs, 1);
        _diagnostics.Add(DiagnosticInfo.Create(descriptor, LocationInfo.InText(_file.Path, _text, span), messageArgs));
    }
}
