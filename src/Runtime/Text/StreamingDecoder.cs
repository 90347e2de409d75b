using System;
using System.Collections.Generic;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled;

/// <summary>
/// Turns token ids arriving one at a time into text chunks whose concatenation is the text of the
/// whole sequence.
/// </summary>
/// <remarks>
/// Decoding ids one by one is wrong for SentencePiece: a sequence's first piece loses its leading
/// space ("▁"), and a character encoded as several byte tokens (&lt;0xE4&gt;&lt;0xBD&gt;&lt;0xA0&gt;)
/// decodes to U+FFFD until its last byte arrives. So this decodes a short window of the most recent
/// ids twice — up to the text already emitted, and with the new ids — and emits the difference;
/// both decodes drop the same leading space, so the difference keeps the new piece's own space.
/// Text ending in U+FFFD is held back until the character completes (or <see cref="Flush"/>).
/// The window restarts after each emitted chunk, so the work per id stays constant instead of
/// growing with the length of the text (the scheme of Hugging Face text-generation-inference).
/// </remarks>
public sealed class StreamingDecoder
{
    private readonly Tokenizer _tokenizer;
    // The window: ids from the start of the last emitted chunk on.
    private readonly List<int> _ids = [];
    // _ids[.._readOffset] decode to _emittedText, which is already out; the ids after it are pending.
    private int _readOffset;
    private string _emittedText;

    /// <summary>Creates a decoder for text that follows <paramref name="context"/>.</summary>
    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="context">
    /// Ids whose text the reader already has, such as the prompt with its BOS. Its last id decides
    /// whether the first streamed piece keeps its leading space: after BOS (or with no context) it is
    /// dropped, as llama2.c and SentencePiece do at the start of a text; after a word it is kept.
    /// </param>
    public StreamingDecoder(Tokenizer tokenizer, ReadOnlySpan<int> context)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        if (!context.IsEmpty)
            _ids.Add(context[^1]);
        _readOffset = _ids.Count;
        _emittedText = _tokenizer.Decode(_ids);
    }

    /// <summary>Adds the next id and returns the text it completes; empty while a character is incomplete.</summary>
    public string Append(int id)
    {
        _ids.Add(id);
        string text = _tokenizer.Decode(_ids);
        if (text.Length <= _emittedText.Length || text[^1] == '\uFFFD')
            return string.Empty;

        string chunk = text[_emittedText.Length..];
        // Restart the window at the ids just emitted: they decide the next piece's leading space.
        _ids.RemoveRange(0, _readOffset);
        _readOffset = _ids.Count;
        _emittedText = _tokenizer.Decode(_ids);
        return chunk;
    }

    /// <summary>
    /// Returns the text still held back, as it decodes now (bytes that never completed a character
    /// come out as U+FFFD); call it after the last id.
    /// </summary>
    public string Flush()
    {
        string text = _tokenizer.Decode(_ids);
        if (text.Length <= _emittedText.Length)
            return string.Empty;
        string rest = text[_emittedText.Length..];
        _ids.RemoveRange(0, _readOffset);
        _readOffset = _ids.Count;
        _emittedText = _tokenizer.Decode(_ids);
        return rest;
    }
}
