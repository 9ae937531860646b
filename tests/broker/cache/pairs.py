"""One-word-change pairs that must never share an answer, and paraphrases that should.

Eight features x several pairs each; written by hand, not drawn from any dataset.
"""

from __future__ import annotations

MUST_NOT_HIT: dict[str, list[tuple[str, str]]] = {
    "chatbot": [
        ("I cannot log in to my account", "I cannot log out of my account"),
        ("How do I turn dark mode on?", "How do I turn dark mode off?"),
        (
            "How do I enable two-factor authentication?",
            "How do I disable two-factor authentication?",
        ),
        ("My order arrived before the deadline", "My order arrived after the deadline"),
        ("Can I upgrade my plan?", "Can I downgrade my plan?"),
        ("Why is my payment accepted?", "Why is my payment rejected?"),
        ("I want to subscribe to the newsletter", "I want to unsubscribe from the newsletter"),
    ],
    "summarization": [
        (
            "Summarise: the battery life is great and the screen is sharp.",
            "Summarise: the battery life is terrible and the screen is sharp.",
        ),
        (
            "Summarise in 3 bullet points: quarterly revenue report",
            "Summarise in 5 bullet points: quarterly revenue report",
        ),
        ("Write a short summary of the meeting notes", "Write a long summary of the meeting notes"),
        ("Summarise the pros of remote work", "Summarise the cons of remote work"),
        ("Summarise: profits increased in 2023", "Summarise: profits decreased in 2023"),
        ("Summarise the article in English", "Summarise the article in French"),
    ],
    "code generation": [
        (
            "Write a Python function to sort a list ascending",
            "Write a Python function to sort a list descending",
        ),
        (
            "Write a function that returns the max of a list",
            "Write a function that returns the min of a list",
        ),
        ("Write a Python script to read a CSV file", "Write a Python script to write a CSV file"),
        ("Convert this function to async", "Convert this function to sync"),
        (
            "Write a SQL query that selects users created before 2020",
            "Write a SQL query that selects users created after 2020",
        ),
        ("Rename the variable user_id to account_id", "Rename the variable user_id to customer_id"),
        ("Implement this in Java", "Implement this in Python"),
        (
            "Write a function to encrypt a string with AES",
            "Write a function to decrypt a string with AES",
        ),
        ("Call parse_config() at startup", "Call load_config() at startup"),
    ],
    "content moderation": [
        ("Is this comment toxic: 'you are great'", "Is this comment toxic: 'you are awful'"),
        (
            "Classify as spam or not: 'Win a free iPhone now'",
            "Classify as spam or not: 'Win a free iPad now'",
        ),
        ("This review is not offensive", "This review is offensive"),
        ("The user never threatened anyone", "The user threatened anyone"),
        ("Flag this post: 'I love this community'", "Flag this post: 'I hate this community'"),
        ("Is it legal to post this photo?", "Is it illegal to post this photo?"),
    ],
    "search": [
        ("cheapest flights from London to Paris", "cheapest flights from Paris to London"),
        ("hotels in Berlin open on Sunday", "hotels in Berlin open on Monday"),
        ("restaurants open now near me", "restaurants closed now near me"),
        ("best laptop under $500", "best laptop under $1000"),
        ("weather in Paris tomorrow", "weather in Paris yesterday"),
        ("how to convert celsius to fahrenheit", "how to convert fahrenheit to celsius"),
        ("flights departing after 6pm", "flights departing before 6pm"),
    ],
    "classification": [
        ("Sentiment of: the battery life is great", "Sentiment of: the battery life is terrible"),
        ("Sentiment: the service was good", "Sentiment: the service was bad"),
        ("Sentiment: I would recommend this hotel", "Sentiment: I would not recommend this hotel"),
        (
            "Is this email urgent: meeting moved to 3pm",
            "Is this email urgent: meeting moved to 4pm",
        ),
        ("Label the intent: I want to buy shares", "Label the intent: I want to sell shares"),
        (
            "Is this ticket about login or billing: I can't sign in",
            "Is this ticket about login or billing: I can sign in",
        ),
        ("Classify: the package was damaged", "Classify: the package was undamaged"),
    ],
    "translation": [
        ("Translate to French: good morning", "Translate to German: good morning"),
        ("Translate to Spanish: the door is open", "Translate to Spanish: the door is closed"),
        (
            "Translate 'turn left at the station' to Italian",
            "Translate 'turn right at the station' to Italian",
        ),
        ("Translate to Japanese: I am happy", "Translate to Japanese: I am sad"),
        (
            "Translate to French: I will arrive on Monday",
            "Translate to French: I will arrive on Friday",
        ),
        (
            "Translate to German: the price is 20 euros",
            "Translate to German: the price is 30 euros",
        ),
    ],
    "data extraction": [
        (
            "Extract the total from: invoice #123, amount $450",
            "Extract the total from: invoice #124, amount $980",
        ),
        (
            "Extract the date from: delivered on 2024-03-01",
            "Extract the date from: delivered on 2024-03-02",
        ),
        (
            "Extract the customer name from: 'Order by Alice Smith'",
            "Extract the customer name from: 'Order by Bob Jones'",
        ),
        (
            "Get the maximum temperature from the report",
            "Get the minimum temperature from the report",
        ),
        ("Extract the sender's email address", "Extract the receiver's email address"),
        ("Extract all fields as JSON", "Extract all fields as XML"),
        ("Extract the first line item", "Extract the last line item"),
    ],
}

SHOULD_HIT: list[tuple[str, str]] = [
    ("How do I reset my password?", "How can I reset my password?"),
    ("What is the capital of France?", "What's the capital of France?"),
    ("How do I change my password?", "How can I change my password?"),
    ("How do I cancel my subscription?", "How can I cancel my subscription?"),
    ("How can I contact customer support?", "How do I contact customer support?"),
    ("What is the refund policy?", "What's your refund policy?"),
    ("Where can I download the mobile app?", "Where do I download the mobile app?"),
]

# Paraphrases the shipped rule is known to miss (a content word swapped for a synonym scores
# below the 5% threshold): kept visible as expected failures, not removed.
KNOWN_MISSES: list[tuple[str, str]] = [
    ("What are your opening hours?", "What are your business hours?"),
]
