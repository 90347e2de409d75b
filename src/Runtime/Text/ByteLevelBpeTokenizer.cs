using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled;

/// <summary>
/// A byte-level BPE tokenizer as Hugging Face <c>tokenizers</c> runs it for Llama 3.x, Qwen2/2.5/3 and
/// SmolLM2 (<c>tokenizer.json</c> with a <c>ByteLevel</c> pre-tokenizer and a <c>BPE</c> model; GGUF
/// <c>tokenizer.ggml.model = "gpt2"</c>): added tokens are cut out of the text first, the rest is
/// normalized (Qwen: NFC), split by the pre-tokenizer's regular expressions, each piece's UTF-8 bytes
/// are mapped to GPT-2's byte characters and merged by merge rank.
/// </summary>
/// <remarks>
/// <para>
/// Create one with <see cref="LlamaTokenizers.Load"/> (a model folder, a <c>tokenizer.json</c> or a GGUF
/// file). <see cref="Tokenizer.EncodeToIds(string, bool, bool)"/> gives what transformers'
/// <c>tokenizer(text)["input_ids"]</c> gives: BOS first when the tokenizer adds one (Llama 3), and text
/// that spells an added token (<c>&lt;|eot_id|&gt;</c>) becomes that single token.
/// <see cref="EncodeToIds(string, bool)"/> with <c>addSpecialTokens: false</c> is
/// <c>tokenizer(text, add_special_tokens=False)</c>: no BOS, added tokens still recognised.
/// <see cref="Tokenizer.Decode(IEnumerable{int})"/> is <c>tokenizer.decode(ids)</c> (special tokens kept,
/// spaces cleaned up when the tokenizer's <c>clean_up_tokenization_spaces</c> says so).
/// </para>
/// <para>
/// Why not Microsoft.ML.Tokenizers' <see cref="BpeTokenizer"/>: with <c>ByteLevel</c> set it encodes
/// every golden string correctly, but building it from Llama 3's 280,147 merges takes 450–700 ms on
/// these machines (the load budget is 500 ms for everything), it has no <c>ignore_merges</c> (Llama 3
/// looks a whole piece up in the vocabulary before merging), no BOS switch per call, and no
/// clean-up of decoded spaces. So the merge loop, the byte mapping and the vocabulary are here; the
/// public surface is Microsoft.ML.Tokenizers' <see cref="Tokenizer"/>.
/// </para>
/// <para>
/// Differences from Hugging Face that are known: all added tokens are matched on the raw text (those of these
/// families all have <c>normalized: false</c>), and <c>single_word</c> is not honoured. Characters outside the Basic
/// Multilingual Plane (𝐀, 𠀀, emoji) are split as Hugging Face's code-point regular expressions split them (see
/// <c>SplitByCodePoints</c>). Encoding is thread-safe.
/// </para>
/// </remarks>
public sealed class ByteLevelBpeTokenizer : Tokenizer
{
    private const int CacheCapacity = 200_000;
    private const int CachedPieceMaxLength = 64;
    private const int SmallWordBytes = 64;

    private readonly string[] _tokens;               // id → byte-level string (added tokens: their content)
    private readonly byte[] _tokenBytes;             // the bytes every id decodes to, one after the other
    private readonly int[] _tokenByteStart;          // id → where its bytes start in _tokenBytes (and id + 1 → where they end)
    private readonly TokenTable _vocabulary;
    private readonly PairTable _mergeRanks;               // (left id, right id) → rank
    private readonly int[] _mergeResults;                 // rank → merged id
    private readonly int[] _byteToId = new int[256];
    private readonly Regex[] _splits;
    private readonly bool _ignoreMerges;
    private readonly bool _addPrefixSpace;
    private readonly NormalizationForm? _normalization;
    private readonly Dictionary<string, int> _addedTokens;
    private readonly HashSet<int> _specialIds = [];
    private readonly AddedTokenMatcher? _addedTokenMatcher;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheBySpan;

    internal ByteLevelBpeTokenizer(ByteLevelBpeDefinition definition)
    {
        Definition = definition;
        string source = definition.Source;
        _tokens = definition.Tokens;
        _vocabulary = definition.Vocabulary;
        _mergeRanks = definition.MergeRanks;
        _mergeResults = definition.MergeResults;
        _ignoreMerges = definition.IgnoreMerges;
        _addPrefixSpace = definition.AddPrefixSpace;
        _normalization = definition.Normalization;
        _cacheBySpan = _cache.GetAlternateLookup<ReadOnlySpan<char>>();

        _splits = new Regex[definition.SplitPatterns.Count];
        for (int i = 0; i < _splits.Length; i++)
        {
            try
            {
                // The patterns of Llama 3, Qwen2 and GPT-2 are compiled into this assembly by the regex source generator
                // (nothing to build or JIT at load). Another pattern is compiled where the runtime can (a JIT);
                // NativeAOT interprets it.
                _splits[i] = ByteLevelPreTokenizers.Generated(definition.SplitPatterns[i])
                    ?? new Regex(definition.SplitPatterns[i], RegexOptions.Compiled | RegexOptions.CultureInvariant);
            }
            catch (ArgumentException e)
            {
                throw new ModelFormatException($"{source}: the pre-tokenizer's regular expression /{definition.SplitPatterns[i]}/ is not valid here: {e.Message}", e);
            }
        }

        for (int b = 0; b < 256; b++)
        {
            if (!_vocabulary.TryGetValue([ByteLevelEncoding.CharOf((byte)b)], out _byteToId[b]))
                throw new ModelFormatException($"{source}: the vocabulary has no token for byte 0x{b:X2} ('{ByteLevelEncoding.CharOf((byte)b)}'); it is not a byte-level BPE vocabulary");
        }

        _addedTokens = new Dictionary<string, int>(StringComparer.Ordinal);
        var isAdded = new bool[_tokens.Length];
        foreach (ByteLevelAddedToken added in definition.AddedTokens)
        {
            _addedTokens[added.Content] = added.Id;
            if (added.Special)
                _specialIds.Add(added.Id);
            isAdded[added.Id] = true;
        }
        (_tokenBytes, _tokenByteStart) = ByteLevelEncoding.DecodeAll(_tokens, isAdded);
        if (definition.AddedTokens.Count > 0)
            _addedTokenMatcher = new AddedTokenMatcher(definition.AddedTokens);

        BeginningOfSentenceId = definition.BosId;
        EndOfSentenceId = definition.EosId;
        AddBeginningOfSentence = definition.AddBos && definition.BosId is not null;
        CleanUpTokenizationSpaces = definition.CleanUpTokenizationSpaces;
        if (_normalization is NormalizationForm form)
            Normalizer = new UnicodeNormalizer(form);
    }

    internal ByteLevelBpeDefinition Definition { get; }

    /// <summary>Where the tokenizer was read from (for messages).</summary>
    public string Source => Definition.Source;

    /// <summary>The number of ids: the vocabulary and the added tokens.</summary>
    public int VocabularySize => _tokens.Length;

    /// <summary>The BOS id, or <see langword="null"/> when the tokenizer has none.</summary>
    public int? BeginningOfSentenceId { get; }

    /// <summary>The EOS id named by the tokenizer, or <see langword="null"/>.</summary>
    public int? EndOfSentenceId { get; }

    /// <summary>Whether encoding with special tokens puts BOS first (the post-processor's or <c>add_bos_token</c>'s choice).</summary>
    public bool AddBeginningOfSentence { get; }

    /// <summary>Whether <see cref="Decode(IEnumerable{int})"/> removes the space before <c>. , ! ?</c> and contractions, as transformers' <c>clean_up_tokenization_spaces</c>.</summary>
    public bool CleanUpTokenizationSpaces { get; }

    /// <summary>The pre-tokenizer's regular expressions, applied in order (each splits the pieces of the previous one).</summary>
    public IReadOnlyList<string> SplitPatterns => Definition.SplitPatterns;

    /// <summary>The added tokens (special or not) that are recognised in text as single ids, by their text.</summary>
    public IReadOnlyDictionary<string, int> AddedTokens => _addedTokens;

    /// <summary>Whether <paramref name="id"/> is a special added token (BOS, EOS, chat markers).</summary>
    public bool IsSpecialToken(int id) => _specialIds.Contains(id);

    /// <inheritdoc/>
    public override Normalizer? Normalizer { get; }

    /// <summary>The text of token <paramref name="id"/> as the vocabulary spells it (byte characters: <c>Ġ</c> for a space), or null.</summary>
    public string? MapIdToToken(int id) => (uint)id < (uint)_tokens.Length ? _tokens[id] : null;

    /// <summary>The id of a vocabulary entry or added token spelled <paramref name="token"/>, or null.</summary>
    public int? MapTokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        return _addedTokens.TryGetValue(token, out int added) ? added : _vocabulary.TryGetValue(token, out int id) ? id : null;
    }

    /// <summary>
    /// Encodes <paramref name="text"/>. With <paramref name="addSpecialTokens"/> it is transformers'
    /// <c>tokenizer(text)["input_ids"]</c> (BOS first when <see cref="AddBeginningOfSentence"/>); without,
    /// <c>add_special_tokens=False</c>. Either way text spelling an added token becomes its id.
    /// </summary>
    public IReadOnlyList<int> EncodeToIds(string text, bool addSpecialTokens)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 2);
        Encode(text.AsSpan(), ids, offsets: null, addSpecialTokens, considerNormalization: true, considerPreTokenization: true, out _);
        return ids;
    }

    /// <inheritdoc/>
    protected override EncodeResults<int> EncodeToIds(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        ReadOnlySpan<char> input = text is null ? textSpan : text.AsSpan();
        var ids = new List<int>(input.Length / 3 + 2);
        Encode(input, ids, offsets: null, addSpecialTokens: true, settings.ConsiderNormalization, settings.ConsiderPreTokenization, out string? normalized);
        int consumed = input.Length;
        if (settings.MaxTokenCount > 0 && settings.MaxTokenCount < ids.Count)
        {
            ids.RemoveRange(settings.MaxTokenCount, ids.Count - settings.MaxTokenCount);
            consumed = -1; // not tracked per token on this path
        }
        return new EncodeResults<int> { Tokens = ids, NormalizedText = normalized, CharsConsumed = consumed < 0 ? 0 : consumed };
    }

    /// <inheritdoc/>
    protected override EncodeResults<EncodedToken> EncodeToTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        ReadOnlySpan<char> input = text is null ? textSpan : text.AsSpan();
        var ids = new List<int>(input.Length / 3 + 2);
        var offsets = new List<Range>(input.Length / 3 + 2);
        Encode(input, ids, offsets, addSpecialTokens: true, settings.ConsiderNormalization, settings.ConsiderPreTokenization, out string? normalized);
        int count = settings.MaxTokenCount > 0 ? Math.Min(settings.MaxTokenCount, ids.Count) : ids.Count;
        var tokens = new List<EncodedToken>(count);
        for (int i = 0; i < count; i++)
            tokens.Add(new EncodedToken(ids[i], _tokens[ids[i]], offsets[i]));
        int consumed = count == ids.Count ? (normalized ?? input.ToString()).Length : count == 0 ? 0 : offsets[count - 1].End.Value;
        return new EncodeResults<EncodedToken> { Tokens = tokens, NormalizedText = normalized, CharsConsumed = consumed };
    }

    /// <inheritdoc/>
    protected override int CountTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings) =>
        EncodeToIds(text, textSpan, settings).Tokens.Count;

    /// <inheritdoc/>
    public override string Decode(IEnumerable<int> ids)
    {
        string text = DecodeExact(ids);
        return CleanUpTokenizationSpaces ? CleanUp(text) : text;
    }

    /// <summary>The text of <paramref name="ids"/>' bytes, never cleaned up: what a grammar matched (<see cref="GenerationOptions.Grammar"/>).</summary>
    internal string DecodeExact(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var bytes = new ArrayBufferWriter<byte>(256);
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)_tokens.Length)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"Token id {id} is outside the vocabulary of {_tokens.Length}.");
            bytes.Write(TokenBytes(id));
        }
        // Bytes that are not valid UTF-8 (a character cut off at the end) become U+FFFD, as Rust's from_utf8_lossy.
        return Encoding.UTF8.GetString(bytes.WrittenSpan);
    }

    /// <inheritdoc/>
    public override OperationStatus Decode(IEnumerable<int> ids, Span<char> destination, out int idsConsumed, out int charsWritten)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var list = new List<int>(ids);
        string text = Decode(list);
        if (text.Length <= destination.Length)
        {
            text.CopyTo(destination);
            idsConsumed = list.Count;
            charsWritten = text.Length;
            return OperationStatus.Done;
        }
        // The longest prefix of ids whose text fits.
        int fit = 0;
        string fitText = string.Empty;
        for (int n = 1; n < list.Count; n++)
        {
            string prefix = Decode(list.GetRange(0, n));
            if (prefix.Length > destination.Length)
                break;
            fit = n;
            fitText = prefix;
        }
        fitText.CopyTo(destination);
        idsConsumed = fit;
        charsWritten = fitText.Length;
        return OperationStatus.DestinationTooSmall;
    }

    /// <summary>transformers' <c>clean_up_tokenization</c>.</summary>
    internal static string CleanUp(string text)
    {
        if (text.IndexOf(' ') < 0)
            return text;
        return text.Replace(" .", ".", StringComparison.Ordinal).Replace(" ?", "?", StringComparison.Ordinal)
            .Replace(" !", "!", StringComparison.Ordinal).Replace(" ,", ",", StringComparison.Ordinal)
            .Replace(" ' ", "'", StringComparison.Ordinal).Replace(" n't", "n't", StringComparison.Ordinal)
            .Replace(" 'm", "'m", StringComparison.Ordinal).Replace(" 's", "'s", StringComparison.Ordinal)
            .Replace(" 've", "'ve", StringComparison.Ordinal).Replace(" 're", "'re", StringComparison.Ordinal);
    }

    // ---- encoding ----

    private void Encode(ReadOnlySpan<char> text, List<int> ids, List<Range>? offsets, bool addSpecialTokens,
        bool considerNormalization, bool considerPreTokenization, out string? normalizedText)
    {
        normalizedText = null;
        if (addSpecialTokens && AddBeginningOfSentence)
        {
            ids.Add(BeginningOfSentenceId!.Value);
            offsets?.Add(new Range(0, 0));
        }

        bool normalize = considerNormalization && _normalization is not null && !text.IsNormalized(_normalization.Value);
        // Offsets refer to the normalized text when normalization changed it.
        StringBuilder? normalized = normalize ? new StringBuilder(text.Length) : null;
        int outputOffset = 0;
        bool first = true;
        int start = 0;
        while (start <= text.Length)
        {
            int match = -1, matchLength = 0, id = -1;
            if (_addedTokenMatcher is not null)
                match = _addedTokenMatcher.Find(text[start..], out matchLength, out id);
            ReadOnlySpan<char> segment = match < 0 ? text[start..] : text.Slice(start, match);
            ReadOnlySpan<char> rest = match < 0 ? default : text[(start + match + matchLength)..];
            if (match >= 0)
            {
                ByteLevelAddedToken added = _addedTokenMatcher!.Token(id);
                if (added.LStrip)
                    segment = segment.TrimEnd();
            }

            if (!segment.IsEmpty)
            {
                string? normalizedSegment = normalize ? segment.ToString().Normalize(_normalization!.Value) : null;
                ReadOnlySpan<char> encoded = normalizedSegment is null ? segment : normalizedSegment.AsSpan();
                normalized?.Append(encoded);
                EncodeSegment(encoded, first, considerPreTokenization, ids, offsets, outputOffset);
                outputOffset += encoded.Length;
            }
            first = false;
            if (match < 0)
                break;

            ByteLevelAddedToken token = _addedTokenMatcher!.Token(id);
            ids.Add(token.Id);
            offsets?.Add(new Range(outputOffset, outputOffset + matchLength));
            normalized?.Append(text.Slice(start + match, matchLength));
            outputOffset += matchLength;
            int next = start + match + matchLength;
            if (token.RStrip)
                next += rest.Length - rest.TrimStart().Length;
            start = next;
            if (start == text.Length)
                break;
        }
        if (normalized is not null)
            normalizedText = normalized.ToString();
    }

    private void EncodeSegment(ReadOnlySpan<char> segment, bool atStart, bool considerPreTokenization, List<int> ids, List<Range>? offsets, int offset)
    {
        if (_addPrefixSpace && atStart && segment[0] != ' ')
        {
            // ByteLevel's add_prefix_space: the first word is encoded as if a space preceded it.
            string spaced = " " + segment.ToString();
            int before = ids.Count;
            Split(spaced.AsSpan(), 0, considerPreTokenization, ids, offsets, offset - 1);
            if (offsets is not null && offsets.Count > before && offsets[before].Start.Value < offset)
                offsets[before] = new Range(offset, offsets[before].End.Value);
            return;
        }
        Split(segment, 0, considerPreTokenization, ids, offsets, offset);
    }

    /// <summary>Splits <paramref name="text"/> by split stage <paramref name="stage"/> (isolating matches and the text between them) and encodes the pieces.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Split(ReadOnlySpan<char> text, int stage, bool considerPreTokenization, List<int> ids, List<Range>? offsets, int offset)
    {
        if (!considerPreTokenization || stage == _splits.Length)
        {
            EncodePiece(text, ids, offsets, offset);
            return;
        }
        if (text.ContainsAnyInRange('\uD800', '\uDFFF'))
        {
            SplitByCodePoints(text, stage, ids, offsets, offset);
            return;
        }
        int last = 0;
        foreach (ValueMatch match in _splits[stage].EnumerateMatches(text))
        {
            if (match.Length == 0)
                continue;
            if (match.Index > last)
                Split(text[last..match.Index], stage + 1, true, ids, offsets, offset + last);
            Split(text.Slice(match.Index, match.Length), stage + 1, true, ids, offsets, offset + match.Index);
            last = match.Index + match.Length;
        }
        if (last < text.Length)
            Split(text[last..], stage + 1, true, ids, offsets, offset + last);
    }

    /// <summary>
    /// <see cref="Split"/> of a text with characters outside the Basic Multilingual Plane. Hugging Face's regular
    /// expressions see code points, .NET's see UTF-16 code units: to .NET a surrogate pair is two characters of the
    /// category Surrogate, so a letter such as 𝐀 or 𠀀 would not be <c>\p{L}</c> and an emoji would be two characters
    /// where the pattern allows one (<c>[^\r\n\p{L}\p{N}]?\p{L}+</c> keeps "🦙abc" together). The regex therefore
    /// runs on a stand-in text with one character per code point, each supplementary character replaced by a BMP
    /// character of the same Unicode category, and its matches are mapped back to the text.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void SplitByCodePoints(ReadOnlySpan<char> text, int stage, List<int> ids, List<Range>? offsets, int offset)
    {
        char[] standIn = ArrayPool<char>.Shared.Rent(text.Length);
        int[] start = ArrayPool<int>.Shared.Rent(text.Length + 1); // stand-in index → text index
        try
        {
            int count = 0;
            for (int i = 0; i < text.Length; count++)
            {
                start[count] = i;
                if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                {
                    standIn[count] = ByteLevelEncoding.StandIn(Rune.GetUnicodeCategory(new Rune(text[i], text[i + 1])));
                    i += 2;
                }
                else
                {
                    standIn[count] = text[i++];
                }
            }
            start[count] = text.Length;
            int last = 0;
            foreach (ValueMatch match in _splits[stage].EnumerateMatches(standIn.AsSpan(0, count)))
            {
                if (match.Length == 0)
                    continue;
                int from = start[match.Index], to = start[match.Index + match.Length];
                if (from > last)
                    Split(text[last..from], stage + 1, true, ids, offsets, offset + last);
                Split(text[from..to], stage + 1, true, ids, offsets, offset + from);
                last = to;
            }
            if (last < text.Length)
                Split(text[last..], stage + 1, true, ids, offsets, offset + last);
        }
        finally
        {
            ArrayPool<char>.Shared.Return(standIn);
            ArrayPool<int>.Shared.Return(start);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void EncodePiece(ReadOnlySpan<char> piece, List<int> ids, List<Range>? offsets, int offset)
    {
        int before = ids.Count;
        if (piece.Length <= CachedPieceMaxLength && _cacheBySpan.TryGetValue(piece, out int[]? cached))
        {
            ids.AddRange(cached);
        }
        else
        {
            EncodePieceUncached(piece, ids);
            if (piece.Length <= CachedPieceMaxLength && _cache.Count < CacheCapacity)
                _cacheBySpan.TryAdd(piece, ids.GetRange(before, ids.Count - before).ToArray());
        }
        if (offsets is not null)
            AddOffsets(piece, ids, before, offsets, offset);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void EncodePieceUncached(ReadOnlySpan<char> piece, List<int> ids)
    {
        int maxBytes = Encoding.UTF8.GetMaxByteCount(piece.Length);
        byte[]? rentedBytes = maxBytes > 512 ? ArrayPool<byte>.Shared.Rent(maxBytes) : null;
        Span<byte> bytes = rentedBytes ?? stackalloc byte[512];
        try
        {
            int byteCount = Encoding.UTF8.GetBytes(piece, bytes);
            bytes = bytes[..byteCount];
            if (byteCount == 1)
            {
                ids.Add(_byteToId[bytes[0]]);
                return;
            }
            if (_ignoreMerges && TryWholePiece(bytes, out int whole))
            {
                ids.Add(whole);
                return;
            }
            MergeBytes(bytes, ids);
        }
        finally
        {
            if (rentedBytes is not null)
                ArrayPool<byte>.Shared.Return(rentedBytes);
        }
    }

    /// <summary><c>ignore_merges</c>: a piece that is itself a vocabulary entry is that entry, whatever the merges would make of it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private bool TryWholePiece(ReadOnlySpan<byte> bytes, out int id)
    {
        char[]? rented = bytes.Length > 256 ? ArrayPool<char>.Shared.Rent(bytes.Length) : null;
        Span<char> chars = rented ?? stackalloc char[256];
        try
        {
            for (int i = 0; i < bytes.Length; i++)
                chars[i] = ByteLevelEncoding.CharOf(bytes[i]);
            return _vocabulary.TryGetValue(chars[..bytes.Length], out id);
        }
        finally
        {
            if (rented is not null)
                ArrayPool<char>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// The BPE merge loop: repeatedly merges the adjacent pair of lowest merge rank (the leftmost among
    /// equals), as Hugging Face's <c>Word::merge_all</c>. Short pieces rescan the pairs each step; long
    /// ones (a run of CJK text is one piece) keep a priority queue, so the work stays n·log n.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void MergeBytes(ReadOnlySpan<byte> bytes, List<int> ids)
    {
        int n = bytes.Length;
        int[]? rented = n > SmallWordBytes ? ArrayPool<int>.Shared.Rent(2 * n) : null;
        Span<int> buffer = rented ?? stackalloc int[2 * SmallWordBytes];
        Span<int> symbol = buffer[..n];
        Span<int> next = buffer.Slice(n, n);
        for (int i = 0; i < n; i++)
        {
            symbol[i] = _byteToId[bytes[i]];
            next[i] = i + 1;
        }
        try
        {
            if (n <= SmallWordBytes)
                MergeByScanning(symbol, next);
            else
                MergeWithQueue(symbol, next, n);
            for (int i = 0; i < n; i = next[i])
                ids.Add(symbol[i]);
        }
        finally
        {
            if (rented is not null)
                ArrayPool<int>.Shared.Return(rented);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void MergeByScanning(Span<int> symbol, Span<int> next)
    {
        int n = symbol.Length;
        while (true)
        {
            int bestRank = int.MaxValue, bestLeft = -1;
            for (int i = 0; next[i] < n; i = next[i])
            {
                if (_mergeRanks.TryGetRank(symbol[i], symbol[next[i]], out int rank) && rank < bestRank)
                {
                    bestRank = rank;
                    bestLeft = i;
                }
            }
            if (bestLeft < 0)
                return;
            symbol[bestLeft] = _mergeResults[bestRank];
            next[bestLeft] = next[next[bestLeft]];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void MergeWithQueue(Span<int> symbol, Span<int> next, int n)
    {
        int[] previous = ArrayPool<int>.Shared.Rent(n);
        try
        {
            for (int i = 0; i < n; i++)
                previous[i] = i - 1;
            // Element: the left symbol's index and the two ids the pair had when queued (stale entries are skipped).
            var queue = new PriorityQueue<(int Left, int LeftId, int RightId), (int Rank, int Left)>(n);
            for (int i = 0; i + 1 < n; i++)
                Enqueue(queue, symbol, i, i + 1);
            while (queue.TryDequeue(out var pair, out var priority))
            {
                int left = pair.Left, right = next[left];
                if (right >= n || symbol[left] != pair.LeftId || symbol[right] != pair.RightId)
                    continue;
                symbol[left] = _mergeResults[priority.Rank];
                symbol[right] = -1;
                next[left] = next[right];
                if (next[left] < n)
                    previous[next[left]] = left;
                if (previous[left] >= 0)
                    Enqueue(queue, symbol, previous[left], left);
                if (next[left] < n)
                    Enqueue(queue, symbol, left, next[left]);
            }
        }
        finally
        {
            ArrayPool<int>.Shared.Return(previous);
        }
    }

    private void Enqueue(PriorityQueue<(int, int, int), (int, int)> queue, Span<int> symbol, int left, int right)
    {
        if (_mergeRanks.TryGetRank(symbol[left], symbol[right], out int rank))
            queue.Enqueue((left, symbol[left], symbol[right]), (rank, left));
    }

    private ReadOnlySpan<byte> TokenBytes(int id) => _tokenBytes.AsSpan(_tokenByteStart[id], _tokenByteStart[id + 1] - _tokenByteStart[id]);

    /// <summary>Character offsets of the tokens <paramref name="from"/>.. of a piece, from their byte lengths.</summary>
    private void AddOffsets(ReadOnlySpan<char> piece, List<int> ids, int from, List<Range> offsets, int offset)
    {
        int charIndex = 0, byteInChar = 0;
        for (int t = from; t < ids.Count; t++)
        {
            int start = charIndex;
            int remaining = _tokenByteStart[ids[t] + 1] - _tokenByteStart[ids[t]];
            while (remaining > 0 && charIndex < piece.Length)
            {
                int charBytes = Rune.DecodeFromUtf16(piece[charIndex..], out Rune rune, out int charsUsed) == OperationStatus.Done ? rune.Utf8SequenceLength : 3;
                int take = Math.Min(remaining, charBytes - byteInChar);
                remaining -= take;
                byteInChar += take;
                if (byteInChar == charBytes)
                {
                    charIndex += charsUsed;
                    byteInChar = 0;
                }
            }
            offsets.Add(new Range(offset + start, offset + Math.Max(charIndex, start)));
        }
    }

    /// <summary>Finds the leftmost added token in a text, the longest one where several start at the same place.</summary>
    private sealed class AddedTokenMatcher
    {
        private readonly SearchValues<string> _contents;
        private readonly Dictionary<char, ByteLevelAddedToken[]> _byFirstChar = [];
        private readonly Dictionary<int, ByteLevelAddedToken> _byId = [];

        public AddedTokenMatcher(IReadOnlyList<ByteLevelAddedToken> tokens)
        {
            var contents = new List<string>();
            var groups = new Dictionary<char, List<ByteLevelAddedToken>>();
            foreach (ByteLevelAddedToken token in tokens)
            {
                if (token.Content.Length == 0)
                    continue;
                contents.Add(token.Content);
                _byId[token.Id] = token;
                if (!groups.TryGetValue(token.Content[0], out var group))
                    groups[token.Content[0]] = group = [];
                group.Add(token);
            }
            foreach ((char c, var group) in groups)
            {
                group.Sort((a, b) => b.Content.Length.CompareTo(a.Content.Length));
                _byFirstChar[c] = [.. group];
            }
            _contents = SearchValues.Create(contents.ToArray(), StringComparison.Ordinal);
        }

        public ByteLevelAddedToken Token(int id) => _byId[id];

        public int Find(ReadOnlySpan<char> text, out int length, out int id)
        {
            int index = text.IndexOfAny(_contents);
            if (index >= 0)
            {
                foreach (ByteLevelAddedToken token in _byFirstChar[text[index]])
                {
                    if (text[index..].StartsWith(token.Content, StringComparison.Ordinal))
                    {
                        length = token.Content.Length;
                        id = token.Id;
                        return index;
                    }
                }
            }
            length = 0;
            id = -1;
            return -1;
        }
    }

    /// <summary>A Unicode normalization form as a Microsoft.ML.Tokenizers normalizer (Qwen's <c>NFC</c>).</summary>
    private sealed class UnicodeNormalizer(NormalizationForm form) : Normalizer
    {
        public override string Normalize(string original) => original.Normalize(form);

        public override string Normalize(ReadOnlySpan<char> original) => original.ToString().Normalize(form);
    }
}

/// <summary>An added token of a byte-level BPE tokenizer (transformers' <c>AddedToken</c>).</summary>
internal sealed record ByteLevelAddedToken(string Content, int Id, bool Special, bool LStrip = false, bool RStrip = false);

/// <summary>GPT-2's map between bytes and the printable characters byte-level vocabularies spell them with.</summary>
internal static class ByteLevelEncoding
{
    private static readonly char[] ByteToChar = BuildByteToChar();
    private static readonly byte[] CharToByte = BuildCharToByte();

    public static char CharOf(byte b) => ByteToChar[b];

    /// <summary>
    /// The bytes of every token, one after the other, and where each starts (<c>starts[id + 1]</c> is where it ends):
    /// a vocabulary entry spelled in byte characters is those bytes, any other token (an added token, an entry with a
    /// character outside the byte map) is its UTF-8 text.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static (byte[] Bytes, int[] Starts) DecodeAll(string[] tokens, bool[] isAdded)
    {
        var starts = new int[tokens.Length + 1];
        var bytes = new byte[tokens.Length * 8];
        byte[] charToByte = CharToByte;
        int total = 0;
        for (int id = 0; id < tokens.Length; id++)
        {
            starts[id] = total;
            string token = tokens[id];
            if (bytes.Length - total < token.Length * 3)
                Array.Resize(ref bytes, Math.Max(bytes.Length * 2, total + token.Length * 3));
            int length = 0;
            if (!isAdded[id])
            {
                for (; length < token.Length; length++)
                {
                    char c = token[length];
                    if (c >= charToByte.Length || (charToByte[c] == 0 && c != ByteToChar[0]))
                        break;
                    bytes[total + length] = charToByte[c];
                }
            }
            if (isAdded[id] || length < token.Length)
                length = Encoding.UTF8.GetBytes(token, bytes.AsSpan(total)); // not byte characters: the text itself
            total += length;
        }
        starts[tokens.Length] = total;
        Array.Resize(ref bytes, total);
        return (bytes, starts);
    }

    /// <summary>A character of the Basic Multilingual Plane in Unicode category <paramref name="category"/>, for <see cref="ByteLevelBpeTokenizer"/>'s code-point split.</summary>
    /// <remarks>None is a letter that case-folds to an ASCII one (the contraction alternatives <c>(?i:'s|'t|…)</c> must not see one), none is whitespace unless its category is.</remarks>
    public static char StandIn(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter => '\u0100',          // Ā
        UnicodeCategory.LowercaseLetter => '\u0101',          // ā
        UnicodeCategory.TitlecaseLetter => '\u01C5',          // ǅ
        UnicodeCategory.ModifierLetter => '\u02B0',           // ʰ
        UnicodeCategory.OtherLetter => '\u05D0',              // א
        UnicodeCategory.NonSpacingMark => '\u0300',
        UnicodeCategory.SpacingCombiningMark => '\u0903',
        UnicodeCategory.EnclosingMark => '\u20DD',
        UnicodeCategory.DecimalDigitNumber => '\u0660',       // ٠
        UnicodeCategory.LetterNumber => '\u2160',             // Ⅰ
        UnicodeCategory.OtherNumber => '\u00B2',              // ²
        UnicodeCategory.SpaceSeparator => '\u3000',
        UnicodeCategory.LineSeparator => '\u2028',
        UnicodeCategory.ParagraphSeparator => '\u2029',
        UnicodeCategory.Control => '\u0001',
        UnicodeCategory.Format => '\u00AD',
        UnicodeCategory.PrivateUse => '\uE000',
        UnicodeCategory.ConnectorPunctuation => '\u203F',     // ‿
        UnicodeCategory.DashPunctuation => '\u2010',          // ‐
        UnicodeCategory.OpenPunctuation => '\u2045',          // ⁅
        UnicodeCategory.ClosePunctuation => '\u2046',         // ⁆
        UnicodeCategory.InitialQuotePunctuation => '\u00AB',  // «
        UnicodeCategory.FinalQuotePunctuation => '\u00BB',    // »
        UnicodeCategory.OtherPunctuation => '\u00A1',         // ¡
        UnicodeCategory.MathSymbol => '\u00AC',               // ¬
        UnicodeCategory.CurrencySymbol => '\u00A2',           // ¢
        UnicodeCategory.ModifierSymbol => '\u00A8',           // ¨
        UnicodeCategory.OtherSymbol => '\u00A6',              // ¦
        _ => '\u0378',                                        // unassigned (OtherNotAssigned)
    };

    // Printable Latin-1 bytes stand for themselves; the others (control, space, 0x7F-0xA0, 0xAD) are
    // shifted to U+0100 and up, in byte order: space is U+0120 'Ġ', newline U+010A 'Ċ'.
    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        int shifted = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE;
            map[b] = printable ? (char)b : (char)(256 + shifted++);
        }
        return map;
    }

    private static byte[] BuildCharToByte()
    {
        var map = new byte[324];
        for (int b = 0; b < 256; b++)
            map[ByteToChar[b]] = (byte)b;
        return map;
    }
}
