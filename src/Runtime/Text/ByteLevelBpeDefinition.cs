using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Llama.Compiled;

/// <summary>
/// Everything a byte-level BPE tokenizer is made of, read from a <c>tokenizer.json</c> (+ the
/// <c>tokenizer_config.json</c> beside it) or from a GGUF file's <c>tokenizer.ggml.*</c> keys.
/// </summary>
internal sealed class ByteLevelBpeDefinition
{
    public required string Source { get; init; }

    /// <summary>id → text: byte characters for the vocabulary, the content for added tokens.</summary>
    public required string[] Tokens { get; init; }

    /// <summary>The BPE vocabulary (byte-character strings → id), without the added tokens.</summary>
    public required TokenTable Vocabulary { get; init; }

    /// <summary>Merge rank → the pair's ids.</summary>
    public required int[] MergeLeft { get; init; }

    public required int[] MergeRight { get; init; }

    /// <summary>Merge rank → the merged id.</summary>
    public required int[] MergeResults { get; init; }

    /// <summary>(left id, right id) → rank, the first rank where a pair repeats.</summary>
    public required PairTable MergeRanks { get; init; }

    public required IReadOnlyList<string> SplitPatterns { get; init; }

    public bool IgnoreMerges { get; init; }

    public bool AddPrefixSpace { get; init; }

    public NormalizationForm? Normalization { get; init; }

    public required IReadOnlyList<ByteLevelAddedToken> AddedTokens { get; init; }

    public int? BosId { get; init; }

    public int? EosId { get; init; }

    public bool AddBos { get; init; }

    public bool CleanUpTokenizationSpaces { get; init; }

    /// <summary>The <c>tokens</c> array with every id filled (gaps are an error: ids must be dense).</summary>
    public static string[] BuildTokens(string source, TokenTable vocabulary, IReadOnlyList<ByteLevelAddedToken> added)
    {
        (int minId, int maxId) = vocabulary.IdRange();
        if (minId < 0)
            throw new ModelFormatException($"{source}: a vocabulary token has the negative id {minId}");
        int count = maxId + 1;
        foreach (ByteLevelAddedToken token in added)
        {
            if (token.Id < 0)
                throw new ModelFormatException($"{source}: added token \"{token.Content}\" has the negative id {token.Id}");
            count = Math.Max(count, token.Id + 1);
        }
        var tokens = new string[count];
        vocabulary.CopyTo(tokens, source);
        foreach (ByteLevelAddedToken token in added)
            tokens[token.Id] = token.Content;
        for (int id = 0; id < count; id++)
        {
            if (tokens[id] is null)
                throw new ModelFormatException($"{source}: no token has id {id} (the vocabulary's ids must run from 0 to {count - 1} without gaps)");
        }
        return tokens;
    }
}

/// <summary>The pre-tokenizers llama.cpp knows by name (<c>tokenizer.ggml.pre</c>) that this runtime supports.</summary>
internal static partial class ByteLevelPreTokenizers
{
    /// <summary>
    /// The regex of one of the known patterns, compiled at build time by the regex source generator: no
    /// <see cref="RegexOptions.Compiled"/> construction (Reflection.Emit, then JIT) at load, and the same code under NativeAOT.
    /// Null for any other pattern.
    /// </summary>
    public static Regex? Generated(string pattern) => pattern switch
    {
        Llama3Pattern => Llama3Regex(),
        Qwen2Pattern => Qwen2Regex(),
        Gpt2Pattern => Gpt2Regex(),
        SingleDigitPattern => SingleDigitRegex(),
        DigitRunPattern => DigitRunRegex(),
        _ => null,
    };

    [GeneratedRegex(Llama3Pattern, RegexOptions.CultureInvariant)]
    private static partial Regex Llama3Regex();

    [GeneratedRegex(Qwen2Pattern, RegexOptions.CultureInvariant)]
    private static partial Regex Qwen2Regex();

    [GeneratedRegex(Gpt2Pattern, RegexOptions.CultureInvariant)]
    private static partial Regex Gpt2Regex();

    [GeneratedRegex(SingleDigitPattern, RegexOptions.CultureInvariant)]
    private static partial Regex SingleDigitRegex();

    [GeneratedRegex(DigitRunPattern, RegexOptions.CultureInvariant)]
    private static partial Regex DigitRunRegex();

    /// <summary>Llama 3's split (tiktoken's cl100k with numbers of up to three digits), as its tokenizer.json writes it.</summary>
    public const string Llama3Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Qwen2's split: Llama 3's with single digits.</summary>
    public const string Qwen2Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>GPT-2's split, which a ByteLevel pre-tokenizer with <c>use_regex</c> applies.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>The Digits pre-tokenizer with <c>individual_digits</c>.</summary>
    public const string SingleDigitPattern = @"\p{N}";

    /// <summary>The Digits pre-tokenizer without <c>individual_digits</c>.</summary>
    public const string DigitRunPattern = @"\p{N}+";

    /// <summary>The names accepted in <c>tokenizer.ggml.pre</c>.</summary>
    public static readonly string[] Names = ["llama-bpe", "llama3", "qwen2", "smollm", "gpt2"];

    /// <summary>
    /// The split stages and <c>ignore_merges</c> of a llama.cpp pre-tokenizer name, as llama.cpp's <c>llama-vocab.cpp</c>
    /// sets them, and the normalizer of the tokenizer.json files that carry that name. <c>qwen2</c> implies Qwen's NFC
    /// normalizer, which a GGUF file cannot record: transformers applies it and llama.cpp does not, so the two differ on
    /// text that is not in NFC; this runtime follows transformers (the model was trained on NFC text).
    /// </summary>
    public static (string[] Patterns, bool IgnoreMerges, NormalizationForm? Normalization) FromGgufName(string source, string name) => name switch
    {
        "llama-bpe" or "llama3" => ([Llama3Pattern], true, null),
        "qwen2" => ([Qwen2Pattern], false, NormalizationForm.FormC),
        "smollm" => ([SingleDigitPattern, Gpt2Pattern], false, null),
        "gpt2" => ([Gpt2Pattern], false, null),
        _ => throw new ModelFormatException($"{source}: tokenizer.ggml.pre is \"{name}\", a pre-tokenizer this runtime does not know; supported: {string.Join(", ", Names)}"),
    };

    /// <summary>The llama.cpp name of a tokenizer's pre-tokenizer, or null when it is none of the supported ones.</summary>
    public static string? GgufNameOf(IReadOnlyList<string> patterns, bool ignoreMerges)
    {
        if (patterns.Count == 1 && patterns[0] == Llama3Pattern && ignoreMerges)
            return "llama-bpe";
        if (patterns.Count == 1 && patterns[0] == Qwen2Pattern && !ignoreMerges)
            return "qwen2";
        if (patterns.Count == 2 && patterns[0] == SingleDigitPattern && patterns[1] == Gpt2Pattern && !ignoreMerges)
            return "smollm";
        if (patterns.Count == 1 && patterns[0] == Gpt2Pattern && !ignoreMerges)
            return "gpt2";
        return null;
    }
}

/// <summary>Reads Hugging Face <c>tokenizer.json</c> files of byte-level BPE models.</summary>
internal static class HuggingFaceTokenizerJson
{
    /// <summary>Reads <paramref name="path"/> and, when present, the <c>tokenizer_config.json</c> beside it.</summary>
    public static ByteLevelBpeDefinition Read(string path)
    {
        byte[] json = File.ReadAllBytes(path);
        string configPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".", "tokenizer_config.json");
        byte[]? config = File.Exists(configPath) ? File.ReadAllBytes(configPath) : null;
        try
        {
            return Parse(path, json, config);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException($"{path} is not valid JSON: {e.Message}", e);
        }
        catch (InvalidOperationException e)
        {
            // JsonElement accessors throw this for a value of the wrong kind.
            throw new ModelFormatException($"{path}: a value has the wrong JSON type: {e.Message}", e);
        }
    }

    public static ByteLevelBpeDefinition Parse(string source, ReadOnlySpan<byte> json, byte[]? config)
    {
        // The vocabulary and merges (most of the 9-11 MB) are read by TokenizerJsonScanner, the merges resolved to ids as
        // they are read; the small sections are parsed into JsonDocuments.
        var scanner = new TokenizerJsonScanner(json, source);
        TokenTable? vocabulary = null;
        MergeTableBuilder? merges = null;
        int mergesAt = -1;
        string? modelType = null;
        bool ignoreMerges = false, byteFallback = false;
        JsonDocument? addedTokens = null, normalizer = null, preTokenizer = null, postProcessor = null;
        try
        {
            scanner.Expect((byte)'{', "the top level");
            bool first = true;
            while (scanner.NextMember(ref first))
            {
                switch (scanner.ReadName())
                {
                    case "model":
                        scanner.Expect((byte)'{', "\"model\"");
                        bool firstKey = true;
                        while (scanner.NextMember(ref firstKey))
                        {
                            switch (scanner.ReadName())
                            {
                                case "type": modelType = scanner.Peek() == '"' ? scanner.ReadString() : null; if (modelType is null) scanner.SkipValue(); break;
                                case "vocab": vocabulary = ReadVocabulary(ref scanner, source); break;
                                case "merges" when vocabulary is not null: merges = ReadMerges(ref scanner, source, vocabulary); break;
                                case "merges":
                                    // Before the vocabulary (unusual): read once the vocabulary is known.
                                    scanner.Peek();
                                    mergesAt = scanner.Position;
                                    scanner.SkipValue();
                                    break;
                                case "ignore_merges": ignoreMerges = scanner.ReadTrue(); break;
                                case "byte_fallback": byteFallback = scanner.ReadTrue(); break;
                                default: scanner.SkipValue(); break;
                            }
                        }
                        break;
                    case "added_tokens": addedTokens = ParseSection(ref scanner, json); break;
                    case "normalizer": normalizer = ParseSection(ref scanner, json); break;
                    case "pre_tokenizer": preTokenizer = ParseSection(ref scanner, json); break;
                    case "post_processor": postProcessor = ParseSection(ref scanner, json); break;
                    default: scanner.SkipValue(); break;
                }
            }
            scanner.ExpectEnd();
            if (vocabulary is not null && merges is null && mergesAt >= 0)
            {
                var mergesScanner = new TokenizerJsonScanner(json[mergesAt..], source);
                merges = ReadMerges(ref mergesScanner, source, vocabulary);
            }

            if (modelType is not null && modelType != "BPE")
                throw new ModelFormatException($"{source}: the model is \"{modelType}\"; only BPE tokenizer.json files are supported");
            if (vocabulary is null)
                throw new ModelFormatException($"{source}: the model has no vocab");
            if (merges is null)
                throw new ModelFormatException($"{source}: the BPE model has no merges");
            if (byteFallback)
                throw new ModelFormatException($"{source}: a BPE model with byte_fallback (SentencePiece-style) is not a byte-level tokenizer; use its tokenizer.model");

            var added = ReadAddedTokens(addedTokens?.RootElement, source);
            (var patterns, bool addPrefixSpace, bool byteLevel) = ReadPreTokenizer(preTokenizer?.RootElement, source);
            if (!byteLevel)
                throw new ModelFormatException($"{source}: the pre-tokenizer has no ByteLevel step; only byte-level BPE tokenizer.json files are supported");
            NormalizationForm? normalization = ReadNormalizer(normalizer?.RootElement, source);

            string[] tokens = ByteLevelBpeDefinition.BuildTokens(source, vocabulary, added);
            var (left, right, result, ranks) = merges.Build();
            (int? bos, bool addBos, int? eosFromTemplate) = ReadPostProcessor(postProcessor?.RootElement, source, vocabulary, added);

            bool cleanUp = false;
            int? eos = eosFromTemplate;
            if (config is not null)
            {
                using JsonDocument configDocument = JsonDocument.Parse(config, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip });
                JsonElement c = configDocument.RootElement;
                if (c.ValueKind == JsonValueKind.Object)
                {
                    if (c.TryGetProperty("clean_up_tokenization_spaces", out JsonElement clean))
                        cleanUp = clean.ValueKind == JsonValueKind.True;
                    if (TokenText(c, "eos_token") is string eosText && Find(eosText, vocabulary, added) is int eosId)
                        eos = eosId;
                    int? configBos = TokenText(c, "bos_token") is string bosText ? Find(bosText, vocabulary, added) : null;
                    // add_bos_token, where a config states it, decides (transformers' Llama/Qwen tokenizer classes rebuild the post-processor from it).
                    if (c.TryGetProperty("add_bos_token", out JsonElement addBosElement) && addBosElement.ValueKind is JsonValueKind.True or JsonValueKind.False)
                    {
                        addBos = addBosElement.ValueKind == JsonValueKind.True && (bos ?? configBos) is not null;
                        bos ??= configBos;
                    }
                    bos ??= configBos;
                }
            }

            return new ByteLevelBpeDefinition
            {
                Source = source,
                Tokens = tokens,
                Vocabulary = vocabulary,
                MergeLeft = left,
                MergeRight = right,
                MergeResults = result,
                MergeRanks = ranks,
                SplitPatterns = patterns,
                IgnoreMerges = ignoreMerges,
                AddPrefixSpace = addPrefixSpace,
                Normalization = normalization,
                AddedTokens = added,
                BosId = bos,
                EosId = eos,
                AddBos = addBos,
                CleanUpTokenizationSpaces = cleanUp,
            };
        }
        finally
        {
            addedTokens?.Dispose();
            normalizer?.Dispose();
            preTokenizer?.Dispose();
            postProcessor?.Dispose();
        }
    }

    /// <summary>The value at the scanner, parsed into a document (the small sections: added tokens, normalizer, pre-tokenizer, post-processor).</summary>
    private static JsonDocument ParseSection(ref TokenizerJsonScanner scanner, ReadOnlySpan<byte> json)
    {
        scanner.Peek();
        int start = scanner.Position;
        scanner.SkipValue();
        var reader = new Utf8JsonReader(json[start..scanner.Position], new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip });
        return JsonDocument.ParseValue(ref reader);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static TokenTable ReadVocabulary(ref TokenizerJsonScanner scanner, string source)
    {
        scanner.Expect((byte)'{', "model.vocab is not an object");
        var vocabulary = new TokenTable(1 << 17);
        bool first = true;
        while (scanner.NextMember(ref first))
        {
            string token = scanner.ReadName();
            if (!scanner.TryReadInt32(out int id))
                throw new ModelFormatException($"{source}: the id of vocabulary entry \"{token}\" is not an integer");
            if (!vocabulary.TryAdd(token, id, out _))
                throw new ModelFormatException($"{source}: vocabulary entry \"{token}\" appears twice");
        }
        return vocabulary;
    }

    /// <summary>Merges as <c>"a b"</c> strings (older files) or <c>["a", "b"]</c> pairs (newer ones), resolved to ids as they are read.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static MergeTableBuilder ReadMerges(ref TokenizerJsonScanner scanner, string source, TokenTable vocabulary)
    {
        scanner.Expect((byte)'[', "model.merges is not an array");
        var merges = new MergeTableBuilder(source, vocabulary, 100_000);
        char[] buffer = new char[256];
        bool first = true;
        while (scanner.NextElement(ref first))
        {
            byte kind = scanner.Peek();
            if (kind == '"')
            {
                int length = scanner.ReadString(ref buffer, 0);
                int space = length > 1 ? buffer.AsSpan(1, length - 1).IndexOf(' ') + 1 : 0;
                if (space <= 0 || space == length - 1)
                    throw new ModelFormatException($"{source}: merge {merges.Count} (\"{buffer.AsSpan(0, length)}\") is not two tokens separated by a space");
                merges.Add(buffer.AsSpan(0, length), space);
            }
            else if (kind == '[')
            {
                scanner.TryConsume((byte)'[');
                if (scanner.Peek() != '"')
                    throw new ModelFormatException($"{source}: merge {merges.Count} is not a pair of strings");
                int a = scanner.ReadString(ref buffer, 0);
                if (!scanner.TryConsume((byte)',') || scanner.Peek() != '"')
                    throw new ModelFormatException($"{source}: merge {merges.Count} is not a pair of strings");
                int b = scanner.ReadString(ref buffer, a + 1);
                buffer[a] = ' ';
                if (a == 0 || b == 0 || !scanner.TryConsume((byte)']'))
                    throw new ModelFormatException($"{source}: merge {merges.Count} is not a pair of non-empty strings");
                merges.Add(buffer.AsSpan(0, a + 1 + b), a);
            }
            else
            {
                throw new ModelFormatException($"{source}: merge {merges.Count} is neither a string nor a pair");
            }
        }
        return merges;
    }

    private static List<ByteLevelAddedToken> ReadAddedTokens(JsonElement? element, string source)
    {
        var added = new List<ByteLevelAddedToken>();
        if (element is not JsonElement array || array.ValueKind == JsonValueKind.Null)
            return added;
        if (array.ValueKind != JsonValueKind.Array)
            throw new ModelFormatException($"{source}: added_tokens is not an array");
        foreach (JsonElement token in array.EnumerateArray())
        {
            if (!token.TryGetProperty("id", out JsonElement id) || !id.TryGetInt32(out int value) ||
                !token.TryGetProperty("content", out JsonElement content) || content.ValueKind != JsonValueKind.String)
                throw new ModelFormatException($"{source}: an added token has no integer id or no content");
            added.Add(new ByteLevelAddedToken(content.GetString()!, value,
                Flag(token, "special"), Flag(token, "lstrip"), Flag(token, "rstrip")));
        }
        return added;
    }

    private static bool Flag(JsonElement element, string name) =>
        element.TryGetProperty(name, out JsonElement value) && value.ValueKind == JsonValueKind.True;

    /// <summary>The split patterns, ByteLevel's add_prefix_space, and whether there is a ByteLevel step at all.</summary>
    private static (List<string> Patterns, bool AddPrefixSpace, bool ByteLevel) ReadPreTokenizer(JsonElement? element, string source)
    {
        var patterns = new List<string>();
        bool addPrefixSpace = false, byteLevel = false;
        if (element is JsonElement root && root.ValueKind == JsonValueKind.Object)
            Visit(root);
        return (patterns, addPrefixSpace, byteLevel);

        void Visit(JsonElement step)
        {
            string type = step.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "";
            switch (type)
            {
                case "Sequence":
                    if (!step.TryGetProperty("pretokenizers", out JsonElement steps) || steps.ValueKind != JsonValueKind.Array)
                        throw new ModelFormatException($"{source}: a Sequence pre-tokenizer has no pretokenizers array");
                    foreach (JsonElement inner in steps.EnumerateArray())
                        Visit(inner);
                    break;
                case "Split":
                    if (!step.TryGetProperty("pattern", out JsonElement pattern) || !pattern.TryGetProperty("Regex", out JsonElement regex) || regex.ValueKind != JsonValueKind.String)
                        throw new ModelFormatException($"{source}: only Split pre-tokenizers with a Regex pattern are supported");
                    string behavior = step.TryGetProperty("behavior", out JsonElement b) && b.ValueKind == JsonValueKind.String ? b.GetString()! : "Isolated";
                    if (behavior != "Isolated" || Flag(step, "invert"))
                        throw new ModelFormatException($"{source}: Split behavior \"{behavior}\"{(Flag(step, "invert") ? " inverted" : "")} is not supported (only Isolated)");
                    patterns.Add(regex.GetString()!);
                    break;
                case "Digits":
                    patterns.Add(Flag(step, "individual_digits") ? ByteLevelPreTokenizers.SingleDigitPattern : ByteLevelPreTokenizers.DigitRunPattern);
                    break;
                case "ByteLevel":
                    byteLevel = true;
                    addPrefixSpace = Flag(step, "add_prefix_space");
                    // use_regex defaults to true: GPT-2's own split.
                    if (!step.TryGetProperty("use_regex", out JsonElement useRegex) || useRegex.ValueKind != JsonValueKind.False)
                        patterns.Add(ByteLevelPreTokenizers.Gpt2Pattern);
                    break;
                default:
                    throw new ModelFormatException($"{source}: pre-tokenizer \"{type}\" is not supported (Sequence, Split, Digits and ByteLevel are)");
            }
        }
    }

    private static NormalizationForm? ReadNormalizer(JsonElement? element, string source)
    {
        if (element is not JsonElement root || root.ValueKind == JsonValueKind.Null)
            return null;
        NormalizationForm? form = null;
        Visit(root);
        return form;

        void Visit(JsonElement step)
        {
            string type = step.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "";
            NormalizationForm? next = type switch
            {
                "NFC" => NormalizationForm.FormC,
                "NFD" => NormalizationForm.FormD,
                "NFKC" => NormalizationForm.FormKC,
                "NFKD" => NormalizationForm.FormKD,
                _ => null,
            };
            if (next is not null)
            {
                if (form is not null && form != next)
                    throw new ModelFormatException($"{source}: a normalizer sequence of two Unicode forms is not supported");
                form = next;
                return;
            }
            if (type == "Sequence" && step.TryGetProperty("normalizers", out JsonElement steps) && steps.ValueKind == JsonValueKind.Array)
            {
                foreach (JsonElement inner in steps.EnumerateArray())
                    Visit(inner);
                return;
            }
            throw new ModelFormatException($"{source}: normalizer \"{type}\" is not supported (NFC, NFD, NFKC, NFKD and Sequence of them are)");
        }
    }

    /// <summary>BOS (a special token before the sequence) and EOS (one after it) of a TemplateProcessing post-processor.</summary>
    private static (int? Bos, bool AddBos, int? Eos) ReadPostProcessor(JsonElement? element, string source, TokenTable vocabulary, List<ByteLevelAddedToken> added)
    {
        int? bos = null, eos = null;
        if (element is JsonElement root && root.ValueKind == JsonValueKind.Object)
            Visit(root);
        return (bos, bos is not null, eos);

        void Visit(JsonElement step)
        {
            string type = step.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "";
            switch (type)
            {
                case "Sequence":
                    if (step.TryGetProperty("processors", out JsonElement steps) && steps.ValueKind == JsonValueKind.Array)
                    {
                        foreach (JsonElement inner in steps.EnumerateArray())
                            Visit(inner);
                    }
                    break;
                case "ByteLevel":
                    break; // offsets only
                case "TemplateProcessing":
                    if (!step.TryGetProperty("single", out JsonElement single) || single.ValueKind != JsonValueKind.Array)
                        throw new ModelFormatException($"{source}: a TemplateProcessing post-processor has no single template");
                    bool seenSequence = false;
                    foreach (JsonElement piece in single.EnumerateArray())
                    {
                        if (piece.TryGetProperty("Sequence", out _))
                        {
                            seenSequence = true;
                            continue;
                        }
                        if (!piece.TryGetProperty("SpecialToken", out JsonElement special) || !special.TryGetProperty("id", out JsonElement name) || name.ValueKind != JsonValueKind.String)
                            throw new ModelFormatException($"{source}: a TemplateProcessing piece is neither a Sequence nor a SpecialToken");
                        string text = name.GetString()!;
                        int id = Find(text, vocabulary, added)
                            ?? throw new ModelFormatException($"{source}: the post-processor adds \"{text}\", which is not a token");
                        if (!seenSequence && bos is null)
                            bos = id;
                        else if (seenSequence && eos is null)
                            throw new ModelFormatException($"{source}: the post-processor appends \"{text}\" after the text; only a leading BOS is supported");
                        else
                            throw new ModelFormatException($"{source}: the post-processor adds more than one token before the text");
                    }
                    break;
                default:
                    throw new ModelFormatException($"{source}: post-processor \"{type}\" is not supported (TemplateProcessing, ByteLevel and Sequence are)");
            }
        }
    }

    private static string? TokenText(JsonElement config, string name)
    {
        if (!config.TryGetProperty(name, out JsonElement value))
            return null;
        if (value.ValueKind == JsonValueKind.String)
            return value.GetString();
        if (value.ValueKind == JsonValueKind.Object && value.TryGetProperty("content", out JsonElement content) && content.ValueKind == JsonValueKind.String)
            return content.GetString();
        return null;
    }

    private static int? Find(string text, TokenTable vocabulary, List<ByteLevelAddedToken> added)
    {
        foreach (ByteLevelAddedToken token in added)
        {
            if (token.Content == text)
                return token.Id;
        }
        return vocabulary.TryGetValue(text, out int id) ? id : null;
    }
}
